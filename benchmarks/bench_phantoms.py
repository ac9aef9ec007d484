"""Benchmark: how fast `synthmed phantoms` writes virtual patients.

Goal: 500 cxr patients (256 px, 1-3 studies each) in under 30 s on 2 cores.
Baseline measured in the same run: the same generator on one worker (serial), on a fifth of the
patients; the ratio is files/s parallel over files/s serial. CPU seconds (all processes) are
printed too, because on a shared machine wall time also counts other people's jobs.

    .venv/bin/python benchmarks/bench_phantoms.py [--patients 500] [--workers 2] [--kind cxr]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SYNTHMED_NO_PROGRESS", "1")

from synthmed.phantoms import make_phantoms  # noqa: E402


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(out: Path, patients: int, workers: int, kind: str, size: int | None) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    summary = make_phantoms(out, patients, seed=0, kind=kind, size=size, workers=workers)
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    size_mb = sum(p.stat().st_size for p in out.rglob("*.dcm")) / 1e6
    return {"patients": patients, "workers": workers, "files": summary.files,
            "studies": summary.studies, "wall_s": wall, "cpu_s": cpu,
            "files_per_s": summary.files / wall, "mb": size_mb}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kind", default="cxr")
    ap.add_argument("--size", type=int, default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_phantoms_"))
    try:
        base = timed(root / "serial", max(args.patients // 5, 1), 1, args.kind, args.size)
        run = timed(root / "parallel", args.patients, args.workers, args.kind, args.size)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for name, r in (("baseline (1 worker)", base), (f"{args.workers} workers", run)):
        print(f"{name:>20}: {r['patients']} patients, {r['studies']} studies, {r['files']} files,"
              f" {r['mb']:.0f} MB in {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU,"
              f" {r['files_per_s']:.1f} files/s")
    print(f"speed-up parallel / serial (files/s): {run['files_per_s'] / base['files_per_s']:.2f}x")
    print(f"CPU ms per file: serial {1000 * base['cpu_s'] / base['files']:.1f}, "
          f"parallel {1000 * run['cpu_s'] / run['files']:.1f}")
    goal = "PASS" if run["wall_s"] < 30 else "MISS"
    print(f"goal {args.patients} {args.kind} patients < 30 s: {goal} ({run['wall_s']:.1f} s)")


if __name__ == "__main__":
    main()
