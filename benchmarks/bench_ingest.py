"""Ingest throughput (slices/s) against a bare pydicom decode loop, measured in the same run.

    .venv/bin/python benchmarks/bench_ingest.py [--repeats 5] [--data ../shared/data]

For the MR sagittal series (192 uncompressed slices) and the CT JPEG 2000 series (20 slices):

- bare loop: `pydicom.dcmread(f).pixel_array` for every file (1 process, and 2 processes);
- `synthmed.data.ingest.ingest` of the folder with configs/ingest-ct.yaml (3D, 32x64x64):
  discovery, header grouping, decode, de-identification, HU / percentile normalisation,
  resize, split and writing every output file, with `workers` 1 and 2.

Bare and ingest runs alternate `--repeats` times (pairs); each run is timed by the wall clock
and by CPU time (this process plus its reaped worker processes, `os.times()`), which is the
steadier figure on a shared machine. The table gives the best of each side and the median of
the paired ratios, for both clocks.
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
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SYNTHMED_NO_PROGRESS", "1")


def _decode(path: Path) -> int:
    import pydicom
    return pydicom.dcmread(path).pixel_array.size


def _cpu() -> float:
    # This process (fine-grained clock) plus worker processes already joined (both sides join
    # their pools; os.times counts in 10 ms ticks).
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def bare_loop(files: list[Path], workers: int) -> tuple[float, float]:
    """(wall s, cpu s)"""
    t, c = time.perf_counter(), _cpu()
    if workers == 1:
        for f in files:
            _decode(f)
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            list(pool.map(_decode, files, chunksize=max(1, len(files) // (4 * workers))))
    return time.perf_counter() - t, _cpu() - c


def ingest_run(folder: Path, workers: int, key: Path, cfg) -> tuple[float, float]:
    """(wall s, cpu s)"""
    from synthmed.data.ingest import ingest
    out = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        t, c = time.perf_counter(), _cpu()
        ingest([folder], out / "ds", cfg, key_path=key, workers=workers)
        return time.perf_counter() - t, _cpu() - c
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
            t = time.process_time()  # 1 worker: everything runs in this process
            try:
                return f(*a, **k)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - t
        setattr(mod, name, timed)

    wrap(dicom_mod, "find_dicom_series", "header pass (find_dicom_series)")
    wrap(dicom_mod, "load_series", "decode + de-id (load_series)")
    wrap(ingest_mod, "prepare", "normalise + resize")
    wrap(ingest_mod, "_write_outputs", "split + write outputs")
    try:
        t = time.process_time()
        ingest_run(folder, 1, key, cfg)
        total = time.process_time() - t
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
    ap.add_argument("--only", default="", help="run only the series whose folder name contains "
                    "this (e.g. mr-brain-sagittal); skips the hippocampus part")
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
    series = [(n, f) for n, f in series if args.only in f.name]
    rows = []
    breakdown = []
    load_before = os.getloadavg()
    started = datetime.now(timezone.utc)
    for name, folder in series:
        files = sorted(p for p in folder.iterdir() if p.is_file())
        bare_loop(files, 1)  # warm the file cache and the decoders
        ingest_run(folder, 1, key, cfg)
        for workers in (1, 2):
            # Bare and ingest alternate, so both see the same background load; the median of
            # the paired ratios is the overhead least disturbed by other jobs on the machine.
            pairs = [(bare_loop(files, workers), ingest_run(folder, workers, key, cfg))
                     for _ in range(args.repeats)]
            n = len(files)
            for clock, c in (("wall", 0), ("cpu", 1)):
                bare, ing = min(p[0][c] for p in pairs), min(p[1][c] for p in pairs)
                paired = statistics.median(i[c] / b[c] for b, i in pairs) - 1.0
                rows.append((name, workers, clock, n, n / bare, n / ing, ing / bare - 1.0, paired))
                print(f"{name}: workers={workers} {clock:4s} bare {n / bare:7.1f} slices/s  ingest "
                      f"{n / ing:7.1f} slices/s  overhead best/best {100 * (ing / bare - 1):+.0f} %, "
                      f"median of paired runs {100 * paired:+.0f} %", flush=True)
        best = min((stages(folder, key, cfg) for _ in range(args.repeats)), key=lambda d: d["total"])
        bare_s = min(bare_loop(files, 1)[1] for _ in range(args.repeats))
        breakdown.append((name, bare_s, best))
        print("  stages (1 worker, cpu): " + ", ".join(f"{k} {v:.3f} s" for k, v in best.items())
              + f"; bare loop {bare_s:.3f} s", flush=True)
    load_after = os.getloadavg()
    # Many small inputs: where a second worker can help (one series is one task).
    hippo = args.data / "msd-hippocampus" / "imagesTr"
    many = []
    if hippo.is_dir() and not args.only:
        cfg3 = load_config(ROOT / "configs" / "ingest-mri-3d.yaml", IngestConfig)
        for workers in (1, 2):
            best = min(ingest_run(hippo, workers, key, cfg3)[0] for _ in range(max(1, args.repeats - 1)))
            n = len(list(hippo.glob("*.nii.gz")))
            many.append((workers, n, n / best))
            print(f"MSD hippocampus, all {n} NIfTI volumes, 3D 48x56x48: workers={workers}  "
                  f"{n / best:.1f} volumes/s", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    import pydicom
    lines = [
        "# Ingest throughput vs a bare pydicom decode loop",
        "",
        f"Machine: {platform.machine()} {os.cpu_count()}-core CPU, shared with other engineers' jobs "
        f"during the run (load average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the "
        f"end); Python {platform.python_version()}, pydicom {pydicom.__version__}; "
        f"{started:%Y-%m-%d %H:%M} UTC; {args.repeats} paired runs per row.",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_ingest.py --repeats {args.repeats}"
        f"{' --only ' + args.only if args.only else ''}`",
        "",
        "Bare loop: `pydicom.dcmread(f).pixel_array` per file. Ingest: the whole "
        "`synthmed.data.ingest.ingest` call with configs/ingest-ct.yaml (header grouping, decode, "
        "de-identification, HU / percentile normalisation, resize to 32x64x64, split, all output "
        "files). Overhead = ingest time / bare time - 1 (goal: at most +25 % at 1 worker). Runs "
        "alternate bare / ingest; 'cpu' is CPU time of the process and its joined workers "
        "(steadier than wall time on this loaded machine); the median of the paired ratios is the "
        "figure least disturbed by other jobs. One series is one task, so ingest at 2 workers "
        "runs it in one process (no pool); the bare loop at 2 workers splits files over 2 processes.",
        "",
        "| series | workers | clock | slices | bare slices/s (best) | ingest slices/s (best) | overhead best/best | overhead, median of paired runs |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, workers, clock, n, b, i, o, paired in rows:
        lines.append(f"| {name} | {workers} | {clock} | {n} | {b:.1f} | {i:.1f} | {100 * o:+.0f} % | {100 * paired:+.0f} % |")
    lines += ["", "Where the 1-worker ingest CPU time goes (seconds, run with the least total; the bare "
              "loop's best CPU time for comparison):",
              "", "| series | bare loop | " + " | ".join(k for k in breakdown[0][2]) + " |",
              "|---|" + "---:|" * (len(breakdown[0][2]) + 1)]
    for name, bare_s, st in breakdown:
        lines.append(f"| {name} | {bare_s:.3f} | " + " | ".join(f"{v:.3f}" for v in st.values()) + " |")
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
