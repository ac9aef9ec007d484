"""Fast sampler vs the 1000-step reference on the same trained model: time and fidelity.

DPM-Solver++ (2M, 20 and 25 steps) against ancestral DDPM with every one of the 1000 training
steps, same model, same seeds, same number of images, unconditional (one network call per step).
For each sample set: wall time, and its distances to the REAL train split (pixel statistics,
and the Fréchet distance in the feature space of the run's label classifier when given). The
real-vs-real floor (random holdout subsets of the same size against train) says how much of a
distance is just the finite sample size.

    python benchmarks/bench_sampling.py --run runs/cxr64/run --dataset runs/cxr64/dataset \
        --classifier runs/cxr64/classifier.safetensors --n 32
    python benchmarks/bench_sampling.py ... --device cuda --n 1000

Goal: >= 40x faster at equal fidelity (fast-sampler distances no more than two standard errors
above the DDPM distances; each set's error from resampling it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthmed.data.dataset import Dataset  # noqa: E402
from synthmed.evaluate import LabelClassifier, fidelity_report  # noqa: E402
from synthmed.models import load  # noqa: E402


def timed_sample(model, n: int, sampler: str, steps: int, seed: int, batch: int, device) -> tuple[np.ndarray, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    x = model.sample(n, conditions=None, steps=steps, sampler=sampler, seed=seed, batch_size=batch).images
    if device.type == "cuda":
        torch.cuda.synchronize()
    return np.asarray(x, np.float32), time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--classifier", type=Path, default=None)
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--fast-steps", type=int, nargs="+", default=[20, 25])
    p.add_argument("--ddpm-steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--floor-draws", type=int, default=5)
    p.add_argument("--bootstrap", type=int, default=30, help="resamples per set for the noise of a distance")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = load(args.run, device=args.device)
    ds = Dataset.open(args.dataset)
    clf = LabelClassifier.load(args.classifier, device=args.device) if args.classifier else None
    real = np.asarray(ds.images[ds.require_split("train")], np.float32)
    hold = np.asarray(ds.images[ds.require_split("holdout")], np.float32)
    print(f"model {model.shape}, n={args.n}, device {device}, threads {torch.get_num_threads()}")

    model.sample(2, steps=2, sampler="dpm++", seed=999)  # warm-up (allocations, lazy imports)
    sets: dict[str, dict] = {}
    boot_rng = np.random.default_rng(args.seed + 1)

    def measured(x: np.ndarray) -> tuple[dict, dict]:
        """Distances of a sample set, and their bootstrap standard deviation (the set resampled
        with replacement): the noise of each distance at this n, for this very set."""
        fid = fidelity_report(real, x, classifier=clf)
        boots = [fidelity_report(real, x[boot_rng.integers(0, x.shape[0], x.shape[0])], classifier=clf)
                 for _ in range(args.bootstrap)]
        return fid, {k: float(np.std([b[k] for b in boots])) for k in fid}

    for steps in args.fast_steps:
        x, s = timed_sample(model, args.n, "dpm++", steps, args.seed, args.batch, device)
        fid, sd = measured(x)
        sets[f"dpm++_{steps}"] = {"seconds": s, "steps": steps, "fidelity": fid, "bootstrap_sd": sd}
        print(f"dpm++ {steps:4d} steps: {s:8.1f} s")
    x, s = timed_sample(model, args.n, "ddpm", args.ddpm_steps, args.seed, args.batch, device)
    fid, sd = measured(x)
    sets[f"ddpm_{args.ddpm_steps}"] = {"seconds": s, "steps": args.ddpm_steps, "fidelity": fid,
                                       "bootstrap_sd": sd}
    print(f"ddpm  {args.ddpm_steps:4d} steps: {s:8.1f} s")

    rng = np.random.default_rng(args.seed)
    n_floor = min(args.n, hold.shape[0])
    floors = [fidelity_report(real, hold[rng.permutation(hold.shape[0])[:n_floor]], classifier=clf)
              for _ in range(args.floor_draws)]
    floor = {k: {"mean": float(np.mean([f[k] for f in floors])), "sd": float(np.std([f[k] for f in floors]))}
             for k in floors[0]}

    ref = sets[f"ddpm_{args.ddpm_steps}"]
    keys = list(ref["fidelity"])
    print(f"\n{'distance to real train':22s} " + " ".join(f"{k:>16s}" for k in sets) + f" {'real floor':>18s}")
    for k in keys:
        print(f"{k:22s} " + " ".join(f"{v['fidelity'][k]:9.4f}±{v['bootstrap_sd'][k]:.4f}" for v in sets.values())
              + f" {floor[k]['mean']:10.4f}±{floor[k]['sd']:.4f}")
    print()
    summary = {}
    for name, v in sets.items():
        if name == f"ddpm_{args.ddpm_steps}":
            continue
        speed = ref["seconds"] / v["seconds"]
        ratio = {k: v["fidelity"][k] / ref["fidelity"][k] if ref["fidelity"][k] > 0 else float("nan")
                 for k in keys}
        # "Equal fidelity": the fast set is no further from real data than DDPM's, give or take
        # two standard errors of the difference (each set's bootstrap sd, combined). The real
        # floor's spread is no noise measure once n nears the holdout size: its resamples are
        # then nearly the same images.
        equal = {k: v["fidelity"][k] <= ref["fidelity"][k]
                 + 2 * float(np.hypot(v["bootstrap_sd"][k], ref["bootstrap_sd"][k])) for k in keys}
        summary[name] = {"speedup": speed, "distance_ratio_vs_ddpm": ratio, "equal_within_2sd": equal}
        print(f"{name}: {speed:.1f}x faster than ddpm_{args.ddpm_steps}; distance ratios "
              + ", ".join(f"{k} {r:.2f}" for k, r in ratio.items())
              + f"; equal within noise on {sum(equal.values())}/{len(equal)} distances")
    out = {"n": args.n, "device": str(device), "threads": torch.get_num_threads(), "sets": sets,
           "real_floor": floor, "summary": summary, "model_hash": model.model_hash}
    if args.json:
        from synthmed.io.atomic import write_json

        write_json(args.json, out)


if __name__ == "__main__":
    main()
