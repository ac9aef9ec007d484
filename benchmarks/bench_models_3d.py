"""3D latent diffusion (configs/mri-3d.yaml) on toy volumes: stage-1 + stage-2 time, sampling time.

    python benchmarks/bench_models_3d.py --shape 24,40,28 --steps 300 --device cuda --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers_dataset import make_toy_dataset  # noqa: E402

from synthmed.config import load_config  # noqa: E402
from synthmed.data.dataset import Dataset  # noqa: E402
from synthmed.models import TrainConfig, load, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="24,40,28")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--ae-steps", type=int, default=300)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=Path("bench-models-3d-out"))
    a = ap.parse_args()
    shape = tuple(int(s) for s in a.shape.split(","))
    ds = make_toy_dataset(a.out / "ds", n_patients=60, images_per_patient=1, shape=shape, seed=0)
    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "mri-3d.yaml", TrainConfig, overrides={
        "steps": a.steps, "sample_every": 0, "device": a.device, "threads": None,
        "latent": {"steps": a.ae_steps}})
    t = time.perf_counter()
    run = train(ds, cfg, a.out / "run")
    train_s = time.perf_counter() - t
    m = load(run, device=a.device)
    t = time.perf_counter()
    x = m.sample(8, conditions={"labels": ["Mass"]}, seed=0).images
    sample_s = time.perf_counter() - t
    real = np.asarray(Dataset.open(ds).images)
    ae = json.loads((run / "autoencoder.json").read_text())
    out = {"shape": shape, "model_shape": m.info["model_shape"], "train_seconds_total": round(train_s, 1),
           "autoencoder_steps": a.ae_steps, "autoencoder_final_l1": round(ae["final_l1"], 4),
           "diffusion_steps": a.steps, "sample_8_dpm++25_seconds": round(sample_s, 2),
           "sample_mean_std": [round(float(x.mean()), 4), round(float(x.std()), 4)],
           "data_mean_std": [round(float(real.mean()), 4), round(float(real.std()), 4)],
           "final_loss": open(run / "losses.csv").read().splitlines()[-1]}
    print(json.dumps(out, indent=2))
    (a.out / "bench_models_3d.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
