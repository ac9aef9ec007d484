"""DICOM reading overhead: synthmed's scan + load against a bare pydicom loop.

    .venv/bin/python benchmarks/bench_dicom.py [--repeats 3] [SERIES_DIR ...]

Baseline: `pydicom.dcmread(f).pixel_array` for every file. Measured: `find_dicom_series` (header
scan) + `load_series` (full read, de-identification, modality LUT, volume assembly). Both run in
this process, interleaved, best of `--repeats`, as wall time and as this process's CPU time (the
steadier figure on a shared machine); the ratio is what the ingest target (<= 1.25 at one worker)
is about. Each repeat times every step with both clocks; the last column is the median of the
per-repeat ratios (runs alternate, so each ratio compares runs under similar background load).
Shared data is read in place from ../shared/data/dicom.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import pydicom
from pydicom.dataset import FileDataset
from pydicom.filereader import read_dataset, read_partial

from synthmed.deid import Deidentifier
from synthmed.io.dicom import find_dicom_series, load_series

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = [ROOT.parent / "shared" / "data" / "dicom" / n
           for n in ("ct-chest-jpeg2000", "mr-fmri-series", "mr-brain-sagittal")]


def bare(files):
    for f in files:
        pydicom.dcmread(f).pixel_array


def split_parse(files):
    """pydicom alone, parsing each file in the two pieces synthmed uses (no synthmed logic)."""
    for f in files:
        with open(f, "rb") as fp:
            head = read_partial(fp, stop_when=lambda tag, vr, length: int(tag) > 0x00280011)
            implicit, little = head.original_encoding
            rest = read_dataset(fp, bool(implicit), bool(little))
        elements = dict(head.items())
        elements.update(rest.items())
        FileDataset(f, elements, preamble=head.preamble, file_meta=head.file_meta,
                    is_implicit_VR=bool(implicit), is_little_endian=bool(little)).pixel_array


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="*", type=Path, default=DEFAULT)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    deid = Deidentifier(b"\x00" * 32)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; pydicom {pydicom.__version__}")
    print("| series | files | clock | bare dcmread+pixel_array (s) | split parse, pydicom only (s) "
          "| scan (s) | load (s) | scan+load (s) | ratio to bare, best/best | ratio, median of paired runs |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")

    def both():
        return time.perf_counter(), time.process_time()

    def since(t0):
        t1 = both()
        return t1[0] - t0[0], t1[1] - t0[1]

    for d in args.dirs:
        files = sorted(p for p in d.iterdir() if p.is_file())
        for f in files:  # warm the page cache for both sides
            f.read_bytes()
        bare(files)
        runs = []  # per repeat: (bare, split, scan, load), each (wall, cpu)
        for _ in range(args.repeats):
            t = both(); bare(files); tb = since(t)
            t = both(); split_parse(files); tp = since(t)
            t = both(); series, _ = find_dicom_series(files); ts = since(t)
            t = both(); [load_series(s, deid) for s in series]; tl = since(t)
            runs.append((tb, tp, ts, tl))
        for c, clock_name in ((0, "wall"), (1, "cpu")):
            b, p, s, l = (min(r[k][c] for r in runs) for k in range(4))
            paired = statistics.median((r[2][c] + r[3][c]) / r[0][c] for r in runs)
            print(f"| {d.name} | {len(files)} | {clock_name} | {b:.3f} | {p:.3f} | {s:.3f} | {l:.3f} | {s + l:.3f} "
                  f"| {(s + l) / b:.2f} | {paired:.2f} |", flush=True)


if __name__ == "__main__":
    main()
