"""Cost of the white-box attacks (synthmed.audit.whitebox) per 1,000 images, and of the whole
`--model` audit, on this machine.

Part 1, per attack: the denoiser of a shipped training config (default demo: 32 px pixel model,
channels 16-32-32) is built with its initial weights (the cost of a query does not depend on the
weights) and every attack scores N images at the white-box settings of a shipped audit profile
(default audit-public). Baseline, measured in the same run: one plain denoiser forward pass over
the same images (at the profile's batch size), so each attack's time is also shown as a multiple
of its query budget (ideal: 1.0).

Part 2, `--audit-images N` (0: skip): the whole `synthmed audit --model RUN` (run_audit with
model=RUN, the shipped profile) on a toy dataset whose train + holdout splits hold N images
(2 per patient, 45 % / 45 % / 10 % train / holdout / reference, as ingest-demo.yaml splits),
a demo model trained for a few steps (cost, not memorisation, is measured) and N / 2 synthetic
images; the time of each stage (encoder, identity network, each attack, statistics, copy
search) is reported beside the whole, and the same audit without --model, in the same run, is
the baseline.

    PYTHONPATH=. python benchmarks/bench_whitebox.py [--config demo] [--size 32] [--n 1000] \
        [--threads 2] [--profile audit-public] [--audit-images 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from synthmed.audit.profile import AuditProfile  # noqa: E402
from synthmed.audit.whitebox import WhiteboxSettings, modules  # noqa: E402
from synthmed.audit.whitebox.target import ModelTarget  # noqa: E402
from synthmed.config import find_shipped_config, load_config, resolve_config_path  # noqa: E402
from synthmed.models import TrainConfig  # noqa: E402
from synthmed.generate.pipeline import DiffusionModel  # noqa: E402
from synthmed.models.network import ConditionalUNet, padded_shape  # noqa: E402


def build_model(config: str, shape: tuple[int, ...]) -> DiffusionModel:
    cfg = load_config(resolve_config_path(config, "train"), TrainConfig)
    if cfg.latent.enabled:
        raise SystemExit("this benchmark builds pixel models only (a latent model needs its autoencoder)")
    torch.manual_seed(0)
    net = ConditionalUNet(len(shape), 1, 2, cfg.network, cfg.conditioning)
    model_shape = padded_shape(shape, net.downsampling)
    info = {"spatial_dims": len(shape), "shape": list(shape), "model_shape": list(model_shape),
            "in_channels": 1, "label_vocabulary": ["A", "B"], "latent": {"enabled": False}}
    return DiffusionModel(net, cfg, info)


def profile_of(name: str) -> AuditProfile:
    return load_config(find_shipped_config(name).path, AuditProfile)


def per_attack(args, settings: WhiteboxSettings) -> dict:
    model = build_model(args.config, (args.size, args.size))
    target = ModelTarget(model)
    rng = np.random.default_rng(0)
    images = rng.random((args.n, args.size, args.size), dtype=np.float32)
    reference = rng.random((min(args.n, 200), args.size, args.size), dtype=np.float32)
    bs = settings.batch_size
    t0 = time.perf_counter()
    x0 = target.encode(images, bs)
    ref = (target.encode(reference, bs), target.conditions(len(reference)))
    cond = target.conditions(len(images))
    t_encode = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()  # baseline: one forward pass over every image
    for s in range(0, args.n, bs):
        target.eps(x0[s:s + bs], 100, cond.select(slice(s, s + bs)))
    t_query, c_query = time.perf_counter() - t0, time.process_time() - c0
    budget = settings.queries_per_image()
    rows = {}
    for name in settings.attacks:
        kw = {"reference": ref} if name == "secmi" else {}
        t0, c0 = time.perf_counter(), time.process_time()
        scores = modules()[name].scores(target, x0, cond, settings, 0, **kw)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert np.isfinite(scores).all()
        q = budget[name] + (budget[name] * len(reference) / args.n if name == "secmi" else 0)
        rows[name] = {"seconds": secs, "per_1000_s": secs * 1000 / args.n, "cpu_per_1000_s": cpu * 1000 / args.n,
                      "queries_per_image": budget[name], "x_query_budget": secs / (q * t_query)}
    return {"n": args.n, "one_forward_per_1000_s": t_query * 1000 / args.n,
            "one_forward_cpu_per_1000_s": c_query * 1000 / args.n,
            "encode_per_1000_s": t_encode * 1000 / args.n, "attacks": rows}


class StageTimer:
    """Wall seconds spent inside chosen functions (patched for the run, restored after)."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self._undo = []

    def wrap(self, owner, attr: str, label, orig=None) -> None:
        orig = orig or getattr(owner, attr)

        @functools.wraps(orig)
        def timed(*a, **kw):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return orig(*a, **kw)
            finally:
                key = label(a) if callable(label) else label
                self.seconds[key] += time.perf_counter() - t0
                self.cpu[key] += time.process_time() - c0

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, orig))

    def restore(self) -> None:
        for owner, attr, orig in reversed(self._undo):
            setattr(owner, attr, orig)
        self._undo.clear()


def whole_audit(args, profile: AuditProfile) -> dict:
    from helpers_nih import toy_dataset, write_plain_cohort
    from synthmed.audit import runner
    from synthmed.audit.attacks import identity as identity_mod
    from synthmed.audit.attacks.base import ATTACKS
    from synthmed.models import train

    n_cand = args.audit_images
    n_patients = int(round(n_cand / 0.9 / 2))
    out: dict = {"audit_images": n_cand}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        ds = toy_dataset(tmp / "ds", n_patients=n_patients, per_patient=2, size=args.size, seed=0,
                         fractions={"train": 0.45, "holdout": 0.45, "reference": 0.1})
        cfg = load_config(resolve_config_path(args.config, "train"), TrainConfig,
                          overrides={"steps": 2, "warmup_steps": 1, "checkpoint_every": 2, "sample_grid": 4,
                                     "sample_every": 0})
        run = train(ds, cfg, tmp / "run")
        syn = toy_dataset(tmp / "syn-src", n_patients=n_cand // 2, per_patient=1, size=args.size, seed=1,
                          fractions={"train": 1.0, "holdout": 0.0, "reference": 0.0})
        from synthmed.data.dataset import Dataset

        cohort = write_plain_cohort(tmp / "cohort", np.asarray(Dataset.open(syn).images))
        d = Dataset.open(ds)
        out["dataset"] = {s: int(d.indices(s).size) for s in ("train", "holdout", "reference")}
        out["synthetic_images"] = n_cand // 2
        out["setup_s"] = time.perf_counter() - t0
        for with_model in ((True,) if args.no_baseline else (False, True)):
            timer = StageTimer()
            timer.wrap(runner, "fit_encoder", "encoder (contrastive, train split)")
            timer.wrap(identity_mod, "prepare_identity", "identity network")
            timer.wrap(runner, "check_memorisation", "copy search (memorisation)")
            timer.wrap(runner, "measure_attack", "statistics (bootstrap, TPR)")
            # each registered class's own score, resolved before any is patched (a subclass
            # would otherwise time its parent's patched score twice)
            for cls, score in [(c, c.score) for c in set(ATTACKS.values())]:
                timer.wrap(cls, "score", lambda a: f"attack {a[0].label}", orig=score)
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                res = runner.run_audit(ds, cohort, profile, tmp / f"audit-{int(with_model)}", seed=0,
                                       model=run if with_model else None)
            finally:
                timer.restore()
            total, cpu = time.perf_counter() - t0, time.process_time() - c0
            key = "with_model" if with_model else "without_model"
            out[key] = {"total_s": total, "total_cpu_s": cpu, "verdict": res.verdict.verdict,
                        "stages_s": dict(sorted(timer.seconds.items(), key=lambda kv: -kv[1])),
                        "stages_cpu_s": dict(sorted(timer.cpu.items(), key=lambda kv: -kv[1]))}
            print(json.dumps({key: out[key]}), flush=True)
            if with_model:
                out[key]["whitebox_settings"] = res.audit["provenance"]["config"]["whitebox"]
                out[key]["whitebox_notes"] = {a["attack"]: a.get("note", "") for a in res.audit["attacks"]
                                              if a["space"] == "model"}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="demo")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", default="audit-public", help="shipped audit profile (its whitebox: section)")
    ap.add_argument("--audit-images", type=int, default=0, help="also time the whole --model audit of this "
                    "many train + holdout images (0: skip)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the audit without --model")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    profile = profile_of(args.profile)
    settings = profile.whitebox
    t_cpu = time.process_time()
    result = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "python": platform.python_version(), "torch": torch.__version__,
              "threads": args.threads, "config": args.config, "size": args.size, "profile": args.profile,
              "whitebox_settings": settings.model_dump(mode="json")}
    if args.n:
        result["per_attack"] = pa = per_attack(args, settings)
        print(f"{args.config} {args.size}x{args.size}, {args.n} images, {args.threads} threads, profile "
              f"{args.profile}; baseline one forward pass: {pa['one_forward_per_1000_s']:.1f} s wall, "
              f"{pa['one_forward_cpu_per_1000_s']:.1f} s CPU per 1,000 images")
        for name, r in pa["attacks"].items():
            print(f"  {name:6s} {r['per_1000_s']:7.1f} s wall, {r['cpu_per_1000_s']:7.1f} s CPU per 1,000 images  "
                  f"({r['queries_per_image']} queries, {r['x_query_budget']:.2f}x the query budget)")
    if args.audit_images:
        result["whole_audit"] = wa = whole_audit(args, profile)
        print(f"whole audit, {wa['audit_images']} train + holdout images {wa['dataset']}, "
              f"{wa['synthetic_images']} synthetic (setup {wa['setup_s']:.0f} s):")
        for key in [k for k in ("without_model", "with_model") if k in wa]:
            r = wa[key]
            print(f"  {key}: {r['total_s']:.0f} s wall ({r['total_s'] / 60:.1f} min), {r['total_cpu_s']:.0f} s "
                  f"CPU ({r['total_cpu_s'] / 60:.1f} min), verdict {r['verdict']}")
            for stage, s in r["stages_s"].items():
                print(f"      {stage:45s} {s:7.1f} s wall {r['stages_cpu_s'][stage]:7.1f} s CPU")
        if "without_model" in wa:
            print(f"  ratio with / without the model: {wa['with_model']['total_s'] / wa['without_model']['total_s']:.2f}x")
    result["process_cpu_s"] = time.process_time() - t_cpu
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
