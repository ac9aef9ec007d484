"""Ingest throughput (slices/s) against a bare pydicom decode loop, measured in the same run.

    .venv/bin/python benchmarks/bench_ingest.py [--repeats 5] [--data ../shared/data]

For the MR sagittal series (192 uncompressed slices) and the CT JPEG 2000 series (20 slices):

- bare loop: `pydicom.dcmread(f).pixel_array` for every file (1 process, and 2 processes);
- `synthmed.data.ingest.ingest` of the folder with configs/ingest-ct.yaml (3D, 32x64x64):
  discovery, header grouping, decode, de-identification, HU / percentile normalisation,
  resize, split and writing every output file, with `workers` 1 and 2.

Bare and ingest runs alternate `--repeats` times; the table gives the best of each and the
median of the paired ratios (the machine is shared: pairing and minima damp other jobs' load).
Also: where the 1-worker time goes, stage by stage, and all 260 MSD hippocampus volumes at 1
and 2 workers (many small tasks, where a second worker can help). Writes
benchmarks/results_ingest.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SYNTHMED_NO_PROGRESS", "1")


def _decode(path: Path) -> int:
    import pydicom
    return pydicom.dcmread(path).pixel_array.size


def bare_loop(files: list[Path], workers: int) -> float:
    t = time.perf_counter()
    if workers == 1:
        for f in files:
            _decode(f)
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            list(pool.map(_decode, files, chunksize=max(1, len(files) // (4 * workers))))
    return time.perf_counter() - t


def ingest_run(folder: Path, workers: int, key: Path, cfg) -> float:
    from synthmed.data.ingest import ingest
    out = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        t = time.perf_counter()
        ingest([folder], out / "ds", cfg, key_path=key, workers=workers)
        return time.perf_counter() - t
    finally:
        shutil.rmtree(out, ignore_errors=True)


def stages(folder: Path, key: Path, cfg) -> dict[str, float]:
    """Seconds per stage of one 1-worker ingest (where the overhead over the bare loop goes)."""
    import synthmed.data.ingest as ingest_mod
    import synthmed.io.dicom as dicom_mod
    spent: dict[str, float] = {}
    originals = {}

    def wrap(mod, name, label):
        f = getattr(mod, name)
        originals[(mod, name)] = f

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t
        setattr(mod, name, timed)

    wrap(dicom_mod, "find_dicom_series", "header pass (find_dicom_series)")
    wrap(dicom_mod, "load_series", "decode + de-id (load_series)")
    wrap(ingest_mod, "prepare", "normalise + resize")
    wrap(ingest_mod, "_write_outputs", "split + write outputs")
    try:
        total = ingest_run(folder, 1, key, cfg)
    finally:
        for (mod, name), f in originals.items():
            setattr(mod, name, f)
    spent["other (discovery, report)"] = total - sum(spent.values())
    spent["total"] = total
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_ingest.md")
    args = ap.parse_args()

    import warnings
    warnings.filterwarnings("ignore")
    from synthmed.config import load_config
    from synthmed.data.ingest_config import IngestConfig
    import synthmed.io.dicom  # noqa: F401  (imports outside the timed region, for both sides)

    cfg = load_config(ROOT / "configs" / "ingest-ct.yaml", IngestConfig)
    tmp = Path(tempfile.mkdtemp(prefix="bench-key-"))
    key = tmp / "deid.key"
    key.write_bytes(os.urandom(32))
    series = [("MR sagittal T1, 192 x 256x256, uncompressed", args.data / "dicom" / "mr-brain-sagittal"),
              ("CT chest, 20 x 512x512, JPEG 2000 lossless", args.data / "dicom" / "ct-chest-jpeg2000")]
    rows = []
    breakdown = []
    for name, folder in series:
        files = sorted(p for p in folder.iterdir() if p.is_file())
        bare_loop(files[:2], 1)  # warm the file cache and the decoders
        for workers in (1, 2):
            # Bare and ingest alternate, so both see the same background load; the median of
            # the paired ratios is the overhead least disturbed by other jobs on the machine.
            pairs = [(bare_loop(files, workers), ingest_run(folder, workers, key, cfg))
                     for _ in range(args.repeats)]
            bare, ing = min(p[0] for p in pairs), min(p[1] for p in pairs)
            paired = statistics.median(i / b for b, i in pairs) - 1.0
            n = len(files)
            rows.append((name, workers, n, n / bare, n / ing, ing / bare - 1.0, paired))
            print(f"{name}: workers={workers}  bare {n / bare:7.1f} slices/s  ingest {n / ing:7.1f} "
                  f"slices/s  overhead best/best {100 * (ing / bare - 1):+.0f} %, median of paired "
                  f"runs {100 * paired:+.0f} %", flush=True)
        best = min((stages(folder, key, cfg) for _ in range(args.repeats)), key=lambda d: d["total"])
        bare1 = next(r for r in rows if r[0] == name and r[1] == 1)
        bare_s = bare1[2] / bare1[3]
        breakdown.append((name, bare_s, best))
        print("  stages (1 worker): " + ", ".join(f"{k} {v:.2f} s" for k, v in best.items())
              + f"; bare loop {bare_s:.2f} s", flush=True)
    # Many small inputs: where a second worker can help (one series is one task).
    hippo = args.data / "msd-hippocampus" / "imagesTr"
    many = []
    if hippo.is_dir():
        cfg3 = load_config(ROOT / "configs" / "ingest-mri-3d.yaml", IngestConfig)
        for workers in (1, 2):
            best = min(ingest_run(hippo, workers, key, cfg3) for _ in range(max(1, args.repeats - 1)))
            n = len(list(hippo.glob("*.nii.gz")))
            many.append((workers, n, n / best))
            print(f"MSD hippocampus, all {n} NIfTI volumes, 3D 48x56x48: workers={workers}  "
                  f"{n / best:.1f} volumes/s", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    lines = [
        "# Ingest throughput vs a bare pydicom decode loop",
        "",
        f"Machine: {platform.machine()} {os.cpu_count()}-core CPU, shared with other jobs during "
        f"the run (figures are the best of {args.repeats}); Python {platform.python_version()}; "
        f"date {date.today().isoformat()}.",
        "",
        "Command: `.venv/bin/python benchmarks/bench_ingest.py`",
        "",
        "Bare loop: `pydicom.dcmread(f).pixel_array` per file. Ingest: the whole "
        "`synthmed.data.ingest.ingest` call with configs/ingest-ct.yaml (header grouping, decode, "
        "de-identification, HU / percentile normalisation, resize to 32x64x64, split, all output "
        "files). Overhead = ingest time / bare time - 1 (goal: at most +25 % at 1 worker).",
        "",
        "| series | workers | slices | bare slices/s (best) | ingest slices/s (best) | overhead best/best | overhead, median of paired runs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, workers, n, b, i, o, paired in rows:
        lines.append(f"| {name} | {workers} | {n} | {b:.1f} | {i:.1f} | {100 * o:+.0f} % | {100 * paired:+.0f} % |")
    lines += ["", "Where the 1-worker ingest time goes (seconds, best run; the bare loop for comparison):",
              "", "| series | bare loop | " + " | ".join(k for k in breakdown[0][2]) + " |",
              "|---|" + "---:|" * (len(breakdown[0][2]) + 1)]
    for name, bare_s, st in breakdown:
        lines.append(f"| {name} | {bare_s:.2f} | " + " | ".join(f"{v:.2f}" for v in st.values()) + " |")
    if many:
        lines += ["", "All 260 MSD hippocampus volumes (configs/ingest-mri-3d.yaml), many small tasks:", "",
                  "| workers | volumes | volumes/s | speed-up |", "|---:|---:|---:|---:|"]
        for workers, n, rate in many:
            lines.append(f"| {workers} | {n} | {rate:.1f} | {rate / many[0][2]:.2f}x |")
    lines.append("")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
