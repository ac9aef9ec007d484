"""Cost of typed folders (synthmed/io/folders.py): the fingerprint check every open makes, and
the marker every write stamps, as a share of the command's time, measured in the same run.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_verify.py [--repeats 3] [--skip-knee]

Folders: the NIH CXR14 sample (1000 PNG) and the knee radiographs (8260 PNG) from ../shared/data,
ingested here with configs/ingest-cxr-64.yaml (64x64), and a 10k synthetic cohort (64x64, written
with write_cohort as `synthmed sample` does). For each:

- full verify: `folders.verify` (sha256 of every file against the marker), what every certifying
  reader (train, sample, evaluate, audit, `synthmed verify`) does; median of --repeats, warm page
  cache; quick verify: size + mtime against the marker, what `inspect` does;
- open: `Dataset.open` / `Cohort.open` with every check (verify included);
- the command: ingest (which stamps once), inspect (the cheapest command that opens a dataset;
  every other one, train, audit, evaluate, does far more work after the same open), and for the
  cohort write_cohort (sample's writing) and one full read of images.npy as the floor.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthmed.config import load_config  # noqa: E402
from synthmed.data.cohort import Cohort, write_cohort  # noqa: E402
from synthmed.data.dataset import Dataset  # noqa: E402
from synthmed.data.ingest import ingest  # noqa: E402
from synthmed.data.ingest_config import IngestConfig  # noqa: E402
from synthmed.data.inspect import inspect_dataset  # noqa: E402
from synthmed.data.records import CohortRecord  # noqa: E402
from synthmed.io import folders  # noqa: E402
from _timing import full_read, median_time  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def _size_mib(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20


def dataset_case(name: str, src: Path, tmp: Path, repeats: int) -> dict:
    cfg = load_config(ROOT / "configs" / "ingest-cxr-64.yaml", IngestConfig)
    key = tmp / "bench.key"
    key.write_bytes(bytes(range(32)))
    out = tmp / name
    t = time.perf_counter()
    ingest([src / "images"], out, cfg, metadata_csv=src / "metadata.csv", key_path=key, workers=2)
    t_ingest = time.perf_counter() - t
    t_stamp = median_time(lambda: folders.file_digests(out), repeats)  # what stamp() hashes
    t_verify = median_time(lambda: folders.verify(out, "dataset"), repeats)
    t_quick = median_time(lambda: folders.verify(out, "dataset", quick=True), repeats)
    t_open = median_time(lambda: Dataset.open(out), repeats)
    t_inspect = median_time(lambda: inspect_dataset(out, tmp / f"{name}-sheet.png"), repeats)
    t_read = median_time(lambda: full_read(out / "images.npy"), repeats)
    row = {"name": name, "mib": _size_mib(out), "images": len(Dataset.open(out)),
           "ingest_s": t_ingest, "stamp_s": t_stamp, "verify_s": t_verify, "quick_s": t_quick,
           "open_s": t_open, "inspect_s": t_inspect, "read_s": t_read}
    print(f"{name}: {row['images']} images, {row['mib']:.0f} MiB; full verify {t_verify:.3f} s "
          f"({t_verify / t_read:.2f}x one full read, {t_read:.3f} s; Dataset.open {t_open:.3f} s); "
          f"quick verify {t_quick:.4f} s = {100 * t_quick / t_inspect:.1f} % of inspect "
          f"({t_inspect:.3f} s); stamp {t_stamp:.3f} s = {100 * t_stamp / t_ingest:.2f} % of "
          f"ingest ({t_ingest:.1f} s)", flush=True)
    return row


def cohort_case(tmp: Path, repeats: int, n: int = 10000) -> dict:
    rng = np.random.default_rng(1)
    images = rng.random((n, 64, 64), dtype=np.float32)
    records = [CohortRecord(index=i, patient=f"SYN-{i:06d}") for i in range(n)]
    out = tmp / "cohort10k"
    k = {"i": 0}

    def write():
        k["i"] += 1
        write_cohort(out, images, records, {}, overwrite=k["i"] > 1)

    t_write = median_time(write, repeats)
    t_stamp = median_time(lambda: folders.file_digests(out), repeats)
    t_verify = median_time(lambda: folders.verify(out, "cohort"), repeats)
    t_open = median_time(lambda: Cohort.open(out), repeats)
    t_read = median_time(lambda: full_read(out / "images.npy"), repeats)
    row = {"name": "cohort10k", "mib": _size_mib(out), "images": n, "write_s": t_write,
           "stamp_s": t_stamp, "verify_s": t_verify, "open_s": t_open, "read_s": t_read}
    print(f"cohort 10000 x 64x64, {row['mib']:.0f} MiB: verify {t_verify:.3f} s "
          f"({t_verify / t_read:.2f}x one full read, {t_read:.3f} s; open {t_open:.3f} s); "
          f"write_cohort {t_write:.3f} s of which stamp {t_stamp:.3f} s "
          f"({100 * t_stamp / t_write:.1f} %)", flush=True)
    return row


def audit_case(name: str, dataset: Path, cohort: Path, tmp: Path) -> dict:
    """Verifying on open as a share of the command that certifies: one full `run_audit` (shipped
    public profile) timed in this run, against the verification of the two folders it opens."""
    from synthmed.audit import run_audit

    t_verify = (median_time(lambda: folders.verify(dataset, "dataset"), 3)
                + median_time(lambda: folders.verify(cohort, "cohort"), 3))
    t = time.perf_counter()
    run_audit(dataset, cohort, ROOT / "configs" / "audit-public.yaml", tmp / f"audit-{name}", seed=0)
    t_audit = time.perf_counter() - t
    print(f"audit {name}: {t_audit:.1f} s, of which verifying the dataset and the cohort on open "
          f"{t_verify:.3f} s = {100 * t_verify / t_audit:.2f} %", flush=True)
    return {"name": name, "audit_s": t_audit, "verify_s": t_verify}


def _holdout_cohort(dataset: Path, out: Path) -> Path:
    d = Dataset.open(dataset)
    idx = d.indices("holdout")
    images = np.asarray(d.images[idx])
    return write_cohort(out, images, [CohortRecord(index=i, patient=f"SYN-{i:06d}")
                                      for i in range(len(idx))], {})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-knee", action="store_true")
    ap.add_argument("--audit", action="store_true",
                    help="also time a full audit per folder (minutes) for the share of the command")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        tmp = Path(tmp)
        done = []
        if (SHARED / "nih-cxr14-1000").is_dir():
            dataset_case("nih", SHARED / "nih-cxr14-1000", tmp, args.repeats)
            done.append("nih")
        if not args.skip_knee and (SHARED / "knee-oa-8260").is_dir():
            dataset_case("knee", SHARED / "knee-oa-8260", tmp, args.repeats)
            done.append("knee")
        cohort_case(tmp, args.repeats)
        if args.audit:
            for name in done:
                audit_case(name, tmp / name, _holdout_cohort(tmp / name, tmp / f"{name}-holdout"), tmp)
            if "nih" in done:  # the 10k cohort against the NIH dataset
                audit_case("nih-vs-cohort10k", tmp / "nih", tmp / "cohort10k", tmp)


if __name__ == "__main__":
    main()
