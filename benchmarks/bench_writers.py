"""The writing share of generating a cohort: sampling vs writing DICOM, NIfTI and PNG.

Trains the demo's network (configs/demo.yaml: same architecture and sampling settings, few
training steps: the sampling cost does not depend on how well it trained) on built-in phantoms
ingested like `synthmed demo` (or, --kind ct3d, the shipped 3D latent model on CT phantoms), samples one study for each of N virtual patients with the
demo's sampler (DPM-Solver++ 20 steps, guidance 2), then writes the same studies in each format
alone (fresh folder each repeat, median of `--repeats`) and in all three plus the manifest,
data card and SHA256SUMS. Prints each format's share of generation time,

    share = write / (sample + write),

against the sampling time measured in the same run (goal: under 10 %), patients/s, and bytes
per patient per format. Writes the first DX rendered through its VOI LUT (pydicom, 8 bit,
enlarged 8x by pixel repetition) to benchmarks/figures/writers_first_dx.png.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_writers.py --patients 64
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_writers.py --kind ct3d --patients 8
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import median_time  # noqa: E402


# The models measured: the demo's (2D DX, configs/demo.yaml) and, with --kind ct3d, the shipped
# 3D latent-diffusion config (configs/mri-3d.yaml) on the built-in CT phantoms ingested with
# configs/ingest-ct.yaml (32x64x64 voxels, HU window [-1000, 1000]).
KINDS = {
    "cxr": {"phantoms": {"kind": "cxr", "size": 64}, "ingest": "ingest-demo", "train": "demo",
            "modality": "DX", "body_part": "CHEST"},
    "ct3d": {"phantoms": {"kind": "ct3d", "size": 64, "slices": 32}, "ingest": "ingest-ct",
             "train": "mri-3d", "modality": "CT", "body_part": "CHEST"},
}


def trained_model(work: Path, kind: str, patients: int, train_steps: int, seed: int):
    """The shipped config's network and sampling settings, trained for `train_steps` steps (the
    sampling cost does not depend on how well it trained); also the ingest config."""
    from synthmed.config import find_shipped_config, load_config
    from synthmed.data.ingest import ingest
    from synthmed.data.ingest_config import IngestConfig
    from synthmed.demo import _demo_key
    from synthmed.models import TrainConfig, load, train
    from synthmed.phantoms import make_phantoms

    k = KINDS[kind]
    make_phantoms(work / "phantoms", patients=patients, seed=seed, studies_per_patient=(1, 1),
                  workers=1, **k["phantoms"])
    cfg = load_config(find_shipped_config(k["ingest"]).path, IngestConfig)
    ingest([work / "phantoms"], work / "dataset", config=cfg,
           metadata_csv=work / "phantoms" / "metadata.csv",
           key_path=_demo_key(work / "key", seed), workers=1)
    over = {"steps": train_steps, "warmup_steps": 2, "checkpoint_every": train_steps,
            "sample_every": 0, "sample_grid": 4}
    if kind == "ct3d":
        over["latent"] = {"steps": train_steps}
    train_cfg = load_config(find_shipped_config(k["train"]).path, TrainConfig, overrides=over)
    return load(train(work / "dataset", train_cfg, work / "run")), cfg


def render_first_dx(path: Path, figure: Path) -> None:
    """The viewer check: pydicom applies the file's own VOI LUT; 8 bit, enlarged 8x."""
    import pydicom
    from pydicom.pixels import apply_voi_lut

    from synthmed.viz import save_png

    ds = pydicom.dcmread(path)
    # the linear VOI function's output spans [0, 2^BitsStored - 1] for unsigned pixels
    shown = apply_voi_lut(ds.pixel_array, ds).astype(np.float64) / (2 ** ds.BitsStored - 1)
    eight = np.round(np.clip(shown, 0, 1) * 255).astype(np.uint8)
    save_png(np.kron(eight, np.ones((8, 8), np.uint8)), figure)


def bytes_under(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=sorted(KINDS), default="cxr")
    p.add_argument("--patients", type=int, default=64)
    p.add_argument("--phantom-patients", type=int, default=None,
                   help="phantom patients to train on (default: 40 for cxr, 12 for ct3d)")
    p.add_argument("--train-steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--figure", type=Path, default=ROOT / "benchmarks" / "figures" / "writers_first_dx.png")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from synthmed import __version__
    from synthmed.generate.documents import (SourceSummary, build_data_card, write_data_card,
                                             write_sha256sums)
    from synthmed.generate.manifest import write_manifest
    from synthmed.generate.study import CohortContext, SyntheticStudy, VirtualPatient
    from synthmed.generate.writers import write_study

    work = Path(tempfile.mkdtemp(prefix="bench-writers-"))
    try:
        t = time.perf_counter()
        phantoms = args.phantom_patients or (40 if args.kind == "cxr" else 12)
        model, ingest_cfg = trained_model(work, args.kind, phantoms, args.train_steps, args.seed)
        kind = KINDS[args.kind]
        modality = kind["modality"]
        print(f"model ready in {time.perf_counter() - t:.1f} s: shape {model.shape}, "
              f"sampling {model.config.sampling.model_dump()}, torch threads {torch.get_num_threads()}")
        n = args.patients
        vocab = model.label_vocabulary
        rng = np.random.default_rng(args.seed)
        conds = [{"labels": [v for v in vocab if rng.random() < 0.3], "age": float(rng.uniform(20, 80)),
                  "sex": "F" if rng.random() < 0.5 else "M"} for _ in range(n)]
        model.sample(2, conditions=conds[:2], seed=999)  # warm-up: allocations, lazy imports
        t = time.perf_counter()
        sampled = model.sample(n, conditions=conds, seed=args.seed, batch_size=64 if modality == "DX" else 8)
        t_sample = time.perf_counter() - t

        ctx = CohortContext(cohort_seed=args.seed, model_hash=model.model_hash,
                            synthmed_version=__version__, spatial_dims=model.spatial_dims,
                            modality=modality, sampling=sampled.settings.as_dict(),
                            spacing=tuple(ingest_cfg.spacing or ()),
                            intensity_window=ingest_cfg.normalisation.ct_range() if modality == "CT" else None,
                            label_vocabulary=tuple(vocab), body_part=kind["body_part"])
        studies = []
        for i, c in enumerate(conds):
            pt = VirtualPatient(index=i, patient_id=f"SYN-{i:06d}", sex=c["sex"], age=c["age"],
                                seed=i, first_offset_days=i)
            studies.append(SyntheticStudy(pt, 0, 0, tuple(c["labels"]), c["age"],
                                          sampled.images[i], seed=i))

        def write(formats: list[str], root: Path, documents: bool = False) -> None:
            rows = [r for s in studies for r in write_study(s, ctx, root, formats)]
            if documents:
                write_manifest(rows, root)
                write_data_card(root, build_data_card(ctx, rows, SourceSummary("-", modality, ctx.spatial_dims)))
                write_sha256sums(root)

        results = {}
        cases = {"dicom": (["dicom"], False), "nifti": (["nifti"], False), "png": (["png"], False),
                 "all": (["dicom", "nifti", "png"], True)}
        for label, (formats, docs) in cases.items():
            counter = iter(range(1000))

            def once() -> None:  # a fresh folder each time: a cohort is written once
                write(formats, work / f"out-{label}-{next(counter)}", docs)

            results[label] = median_time(once, args.repeats)
        every = work / "out-all-0"
        sizes = {f: bytes_under(every / f) / n for f in ("dicom", "nifti", "png")}

        print(f"\n{platform.machine()} {platform.python_version()}, {n} patients x 1 study, "
              f"{modality} {'x'.join(map(str, model.shape))}, date {time.strftime('%Y-%m-%d')}")
        print(f"sampling: {t_sample:.3f} s = {1000 * t_sample / n:.2f} ms / patient "
              f"({n / t_sample:.3g} patients/s)")
        print(f"{'writing':40s} {'s':>8s} {'ms/pt':>8s} {'share':>7s} {'x sample':>9s}")
        names = {"all": "all three + manifest, data card, SHA256SUMS"}
        for label, s in results.items():
            print(f"{names.get(label, label):40s} {s:8.3f} {1000 * s / n:8.2f} {100 * s / (t_sample + s):6.2f}% "
                  f"{s / t_sample:9.4f}")
        total = t_sample + results["all"]
        print(f"generation with all formats: {n / total:.3g} patients/s")
        print("bytes per patient: " + ", ".join(f"{f} {b:,.0f}" for f, b in sizes.items()))

        if modality == "DX":
            render_first_dx(every / "dicom" / "SYN-000000" / "study-00" / "0001.dcm", args.figure)
            print(f"first DX rendered through its VOI LUT: {args.figure}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
