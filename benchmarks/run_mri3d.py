"""Must-show 3: a 3D run end to end on real MRI (MSD Task04 hippocampus, NIfTI).

ingest (3D, centre pad/crop at 1 mm) -> train a tiny 3D conditional UNet -> sample volumes ->
write them as NIfTI (nibabel, through synthmed.io.atomic) plus a cohort folder, and a PNG of the
middle slices of real and synthetic volumes.

    python benchmarks/run_mri3d.py --work runs/mri3d                     # a few minutes on CPU
    python benchmarks/run_mri3d.py --work runs/mri3d --volumes 260 --steps 2000 --device cuda

`run_mri3d(...)` is also what tests/test_mri3d.py calls on a tiny subset.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthmed.data.dataset import Dataset  # noqa: E402
from synthmed.io.atomic import write_bytes, write_json  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "msd-hippocampus"


def save_nifti(path: Path, volume: np.ndarray, spacing: tuple[float, float, float]) -> Path:
    """Write a (D, H, W) synthmed volume as NIfTI (x, y, z order, spacing in the header), atomically.

    nibabel picks the format from the file name, and atomic writes go to a temporary name, so the
    image is serialised to bytes (gzip for .nii.gz) and written with synthmed.io.atomic.write_bytes.
    """
    import nibabel as nib

    data = np.ascontiguousarray(np.asarray(volume, np.float32).transpose(2, 1, 0))
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms((spacing[2], spacing[1], spacing[0]))
    raw = img.to_bytes()
    write_bytes(path, gzip.compress(raw, mtime=0) if str(path).endswith(".gz") else raw)
    return path


def run_mri3d(work: Path, data: Path = DEFAULT_DATA, *, volumes: int = 40,
              shape: tuple[int, int, int] = (24, 32, 24), steps: int = 150, batch: int = 4,
              channels: tuple[int, ...] = (16, 32), n_samples: int = 4, sample_steps: int = 20,
              seed: int = 0, device: str = "cpu", threads: int | None = None,
              grid: Path | None = None) -> dict:
    from synthmed.data.ingest import ingest
    from synthmed.data.ingest_config import IngestConfig
    from synthmed.data.records import CohortRecord
    from synthmed.data.cohort import write_cohort
    from synthmed.models import TrainConfig, load, train
    from synthmed.provenance import provenance

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SYNTHMED_HOME", str(work / "home"))  # the run's own de-id key
    timings: dict[str, float] = {}

    files = sorted((data / "imagesTr").glob("*.nii.gz"))[:volumes]
    if not files:
        raise FileNotFoundError(f"{data / 'imagesTr'}: no NIfTI volumes")
    t0 = time.perf_counter()
    icfg = IngestConfig(spatial_dims=3, shape=shape, spacing=(1.0, 1.0, 1.0), fit="pad_crop",
                        nifti_modality="MR", workers=1)
    ingest(files, work / "dataset", config=icfg)
    timings["ingest_s"] = time.perf_counter() - t0
    ds = Dataset.open(work / "dataset")

    tcfg = TrainConfig(
        seed=seed, steps=steps, batch_size=batch, lr=1e-3, warmup_steps=min(20, steps // 5),
        checkpoint_every=steps, sample_every=0, sample_grid=2, log_every=max(1, steps // 10),
        threads=threads, device=device,
        network={"channels": channels, "attention_levels": [False] * len(channels),
                 "num_res_blocks": 1, "norm_num_groups": 8, "num_head_channels": 8, "context_dim": 16},
        sampling={"steps": sample_steps},
    )
    t0 = time.perf_counter()
    train(work / "dataset", tcfg, work / "run")
    timings["train_s"] = time.perf_counter() - t0

    model = load(work / "run", device=device)
    t0 = time.perf_counter()
    vols = model.sample(n_samples, steps=sample_steps, seed=seed, batch_size=n_samples).images
    timings["sample_s"] = time.perf_counter() - t0

    spacing = tuple(float(s) for s in ds.info.get("spacing") or (1.0, 1.0, 1.0))
    paths = [save_nifti(work / "nifti" / f"synthetic_{i:04d}.nii.gz", v, spacing)
             for i, v in enumerate(vols)]
    records = [CohortRecord(index=i, patient=f"SYN-{i:06d}") for i in range(len(vols))]
    write_cohort(work / "cohort", vols, records,
                 {"provenance": provenance(tcfg, seed=seed, model_sha256=model.model_hash)})
    if grid is not None:
        from synthmed.evaluate import save_grid

        real = np.asarray(ds.images[ds.require_split("train")][:n_samples])
        save_grid(np.concatenate([real, vols]), grid, ncol=n_samples, scale=2)
    losses = [float(line.split(",")[1]) for line in
              (work / "run" / "losses.csv").read_text().splitlines()[1:]]
    result = {"volumes": len(ds), "shape": list(ds.shape), "spacing": list(spacing),
              "splits": {k: v["images"] for k, v in ds.summary()["splits"].items()},
              "samples": [str(p.relative_to(work)) for p in paths],
              "sample_range": [float(vols.min()), float(vols.max())],
              "loss_first": losses[0], "loss_last": losses[-1], "timings": timings,
              "model_sha256": model.model_hash}
    write_json(work / "mri3d.json", result)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "mri3d")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--volumes", type=int, default=60)
    p.add_argument("--shape", type=int, nargs=3, default=[24, 32, 24])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--grid", type=Path, default=None, help="PNG of real (top) and synthetic middle slices")
    args = p.parse_args()
    res = run_mri3d(args.work, args.data, volumes=args.volumes, shape=tuple(args.shape),
                    steps=args.steps, batch=args.batch, n_samples=args.samples,
                    device=args.device, threads=args.threads, grid=args.grid)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
