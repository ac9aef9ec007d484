"""Cost of the white-box attacks (synthmed.audit.whitebox) per 1,000 images on this machine.

The denoiser of a shipped training config (default cxr-64: 64x64 pixel model, channels 32-64-64)
is built with its initial weights (the cost of a query does not depend on the weights) and every
attack scores N images at the profile's default settings. Baseline, measured in the same run: one
plain denoiser forward pass over the same images (batch 64), so each attack's time is also shown
as a multiple of its query budget (ideal: 1.0). The whole `--model` audit of 5,000 images is
extrapolated from the per-image cost of all four attacks (they are linear in the number of
images: each image is scored on its own).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_whitebox.py [--config cxr-64] [--n 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synthmed.audit.whitebox import WhiteboxSettings, modules  # noqa: E402
from synthmed.audit.whitebox.target import ModelTarget  # noqa: E402
from synthmed.config import load_config, resolve_config_path  # noqa: E402
from synthmed.models import TrainConfig  # noqa: E402
from synthmed.models.diffusion import DiffusionModel  # noqa: E402
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="cxr-64")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--audit-images", type=int, default=5000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = build_model(args.config, (args.size, args.size))
    target = ModelTarget(model)
    settings = WhiteboxSettings()
    rng = np.random.default_rng(0)
    images = rng.random((args.n, args.size, args.size), dtype=np.float32)
    reference = rng.random((min(args.n, 200), args.size, args.size), dtype=np.float32)
    t0 = time.perf_counter()
    x0 = target.encode(images, settings.batch_size)
    ref = (target.encode(reference), target.conditions(len(reference)))
    cond = target.conditions(len(images))
    t_encode = time.perf_counter() - t0
    # baseline: one forward pass over every image
    t0 = time.perf_counter()
    for s in range(0, args.n, settings.batch_size):
        target.eps(x0[s:s + settings.batch_size], 100, cond.select(slice(s, s + settings.batch_size)))
    t_query = time.perf_counter() - t0
    budget = settings.queries_per_image()
    rows = {}
    for name, mod in modules().items():
        kw = {"reference": ref} if name == "secmi" else {}
        t0 = time.perf_counter()
        scores = mod.scores(target, x0, cond, settings, 0, **kw)
        secs = time.perf_counter() - t0
        assert np.isfinite(scores).all()
        q = budget[name] + (budget[name] * len(reference) / args.n if name == "secmi" else 0)
        rows[name] = {"seconds": secs, "per_1000": secs * 1000 / args.n, "queries_per_image": budget[name],
                      "x_query_budget": secs / (q * t_query)}
    total_per_image = sum(r["seconds"] for r in rows.values()) / args.n + t_encode / args.n
    audit_minutes = total_per_image * args.audit_images / 60
    result = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "python": platform.python_version(), "torch": torch.__version__,
              "threads": args.threads, "config": args.config, "size": args.size, "n": args.n,
              "one_forward_per_1000_s": t_query * 1000 / args.n, "encode_per_1000_s": t_encode * 1000 / args.n,
              "attacks": rows, "whitebox_minutes_for_audit_images": audit_minutes,
              "audit_images": args.audit_images}
    print(f"{args.config} {args.size}x{args.size}, {args.n} images, {args.threads} threads; "
          f"baseline one forward pass: {t_query * 1000 / args.n:.1f} s per 1,000 images")
    for name, r in rows.items():
        print(f"  {name:6s} {r['per_1000']:7.1f} s per 1,000 images  ({r['queries_per_image']} queries, "
              f"{r['x_query_budget']:.2f}x the query budget)")
    print(f"  all four + encoding, extrapolated to {args.audit_images} images: {audit_minutes:.1f} min")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
