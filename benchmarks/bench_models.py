"""Training speed and sampler agreement of the diffusion model, including the known defect.

Trains two small models on toy 2D images: the default set-up (v-prediction, cosine schedule) and
the set-up that showed the defect (epsilon, linear schedule). For each, samples a batch with the
1000-step DDPM reference, DPM-Solver++ and DDIM, and prints mean / std / histogram distance to the
reference and to the data, the share of saturated pixels, and time ratios against DDPM.

    python benchmarks/bench_models.py --size 64 --steps 1500 --batch 64 --device cuda --out DIR
    python benchmarks/bench_models.py --size 16 --steps 150 --batch 16 --device cpu   # small CPU run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers_dataset import make_toy_dataset  # noqa: E402

from synthmed.config import validate_config  # noqa: E402
from synthmed.data.dataset import Dataset  # noqa: E402
from synthmed.models import TrainConfig, load, train  # noqa: E402


def hist(x: np.ndarray) -> np.ndarray:
    return np.histogram(x, bins=20, range=(0, 1))[0] / x.size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", type=int, default=64, help="images per sampler")
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--channels", default="32,64,64")
    ap.add_argument("--out", type=Path, default=Path("bench-models-out"))
    ap.add_argument("--embed-conditions", action="store_true")
    ap.add_argument("--only-default", action="store_true", help="skip the epsilon/linear run")
    a = ap.parse_args()
    chans = [int(c) for c in a.channels.split(",")]
    ds = make_toy_dataset(a.out / "ds", n_patients=a.patients, images_per_patient=2,
                          shape=(a.size, a.size), seed=0)
    real = np.asarray(Dataset.open(ds).images)
    results = {"args": {k: str(v) for k, v in vars(a).items()},
               "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() and a.device != "cpu" else "cpu",
               "data": {"mean": float(real.mean()), "std": float(real.std())}, "runs": {}}
    setups = {"v_prediction+cosine (default)": {"prediction_type": "v_prediction", "beta_schedule": "squaredcos_cap_v2"},
              "epsilon+linear (known defect)": {"prediction_type": "epsilon", "beta_schedule": "linear"}}
    if a.only_default:
        setups = {k: v for k, v in setups.items() if "default" in k}
    for name, sched in setups.items():
        cfg = validate_config({
            "steps": a.steps, "batch_size": a.batch, "lr": 1e-3, "warmup_steps": 50, "log_every": 50,
            "checkpoint_every": a.steps, "sample_every": 0, "sample_grid": 16, "device": a.device,
            "network": {"channels": chans, "attention_levels": [False] * (len(chans) - 1) + [True],
                        "num_head_channels": 16, "norm_num_groups": 16, "context_dim": 32,
                        "embed_conditions": a.embed_conditions},
            "scheduler": sched, "sampling": {"steps": 25}}, TrainConfig)
        run_dir = a.out / name.split()[0].replace("+", "_")
        t = time.perf_counter()
        run = train(ds, cfg, run_dir)
        train_s = time.perf_counter() - t
        losses = (run / "losses.csv").read_text().splitlines()
        m = load(run, device=a.device)
        r = {"train_seconds": round(train_s, 1), "it_per_s": round(a.steps / train_s, 2),
             "final_loss_row": losses[-1], "samplers": {}}
        ref = None
        for sampler, steps in (("ddpm", 1000), ("dpm++", 25), ("ddim", 25), ("dpm++", 10)):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t = time.perf_counter()
            x = m.sample(a.n, sampler=sampler, steps=steps, seed=1, batch_size=a.n).images
            dt = time.perf_counter() - t
            if ref is None:
                ref, ref_dt = x, dt
            r["samplers"][f"{sampler}-{steps}"] = {
                "seconds": round(dt, 2), "speedup_vs_ddpm": round(ref_dt / dt, 1),
                "mean": round(float(x.mean()), 4), "std": round(float(x.std()), 4),
                "hist_l1_vs_ddpm": round(float(np.abs(hist(x) - hist(ref)).sum()), 3),
                "hist_l1_vs_data": round(float(np.abs(hist(x) - hist(real)).sum()), 3),
                "saturated_share": round(float(((x <= 0.001) | (x >= 0.999)).mean()), 3)}
            print(name, sampler, steps, r["samplers"][f"{sampler}-{steps}"], flush=True)
        if "default" in name:
            # Does the model draw what a label asks for? The toy "Mass" is a bright spot at a
            # fixed place: compare that region in Mass vs label-free samples from the same noise.
            d = Dataset.open(ds)
            lab = d.label_matrix()[:, 1] > 0
            spot = (real[lab].mean(0) - real[~lab].mean(0)) > 0.15
            mass = m.sample(a.n, conditions={"labels": ["Mass"]}, seed=2).images
            clear = m.sample(a.n, conditions={"labels": []}, seed=2).images
            r["label_check"] = {
                "spot_pixels": int(spot.sum()),
                "sample_gap": round(float(mass[:, spot].mean() - clear[:, spot].mean()), 4),
                "data_gap": round(float(real[lab][:, spot].mean() - real[~lab][:, spot].mean()), 4)}
            print(name, "label check", r["label_check"], flush=True)
        results["runs"][name] = r
        print(name, "train", r["train_seconds"], "s", r["it_per_s"], "it/s", losses[-1], flush=True)
    text = json.dumps(results, indent=2)
    print(text)
    (a.out / "bench_models.json").write_text(text)


if __name__ == "__main__":
    main()
