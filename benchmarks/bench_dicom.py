"""DICOM reading overhead: synthmed's scan + load against a bare pydicom loop.

    .venv/bin/python benchmarks/bench_dicom.py [--repeats 3] [SERIES_DIR ...]

Baseline: `pydicom.dcmread(f).pixel_array` for every file. Measured: `find_dicom_series` (header
scan) + `load_series` (full read, de-identification, modality LUT, volume assembly). Both run in
this process, interleaved, best of `--repeats`, as wall time and as this process's CPU time (the
steadier figure on a shared machine); the ratio is what the ingest target (<= 1.25 at one worker)
is about. Shared data is read in place from ../shared/data/dicom.
"""

from __future__ import annotations

import argparse
import os
import platform
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
          "| scan (s) | load (s) | scan+load (s) | ratio to bare |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for d in args.dirs:
        files = sorted(p for p in d.iterdir() if p.is_file())
        for f in files:  # warm the page cache for both sides
            f.read_bytes()
        for clock_name, clock in (("wall", time.perf_counter), ("cpu", time.process_time)):
            tb, tp, ts, tl = [], [], [], []
            for _ in range(args.repeats):
                t = clock(); bare(files); tb.append(clock() - t)
                t = clock(); split_parse(files); tp.append(clock() - t)
                t = clock(); series, _ = find_dicom_series(files); ts.append(clock() - t)
                t = clock(); [load_series(s, deid) for s in series]; tl.append(clock() - t)
            b, p, s, l = min(tb), min(tp), min(ts), min(tl)
            print(f"| {d.name} | {len(files)} | {clock_name} | {b:.3f} | {p:.3f} | {s:.3f} | {l:.3f} | {s + l:.3f} "
                  f"| {(s + l) / b:.2f} |")


if __name__ == "__main__":
    main()
