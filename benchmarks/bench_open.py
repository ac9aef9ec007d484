"""Cost of the checks `Dataset.open` / `Cohort.open` make (values finite and in range, manifest
consistent, JSON well-formed), against reading the images once, measured in the same run.

Every command that uses a folder reads its images at least once (training copies the train split,
the audit embeds every image), so "one full read of images.npy" is the floor of any command's time;
the check's share of that read bounds its share of the command.

    python benchmarks/bench_open.py            # NIH-sized, knee-sized, MRI-3D-sized datasets, 10k cohort

Shapes are the shipped ingest configs' (cxr 64x64, MRI 48x56x48); the pixel values are synthetic
(uniform in [0, 1]), which does not change the cost of a min/max pass.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from synthmed.data.cohort import Cohort, write_cohort  # noqa: E402
from synthmed.data.dataset import Dataset  # noqa: E402
from synthmed.data.records import CohortRecord  # noqa: E402
from _timing import full_read, median_time  # noqa: E402


def _write_dataset(root: Path, n: int, shape: tuple[int, ...]) -> Path:
    from helpers_dataset import make_toy_dataset

    # manifest / dataset.json from the test helper (n images of n / 2 patients), images replaced
    make_toy_dataset(root, n_patients=n // 2, images_per_patient=2, shape=(4,) * len(shape))
    import json

    from synthmed.io.atomic import save_npy, write_json

    rng = np.random.default_rng(0)
    images = np.lib.format.open_memmap(root / "big.npy", mode="w+", dtype=np.float32, shape=(n, *shape))
    for i in range(0, n, 512):
        images[i:i + 512] = rng.random((min(512, n - i), *shape), dtype=np.float32)
    images.flush()
    del images
    (root / "big.npy").replace(root / "images.npy")
    info = json.loads((root / "dataset.json").read_text())
    info["shape"] = list(shape)
    write_json(root / "dataset.json", info)
    from synthmed.io import folders

    folders.stamp(root, "dataset")  # the images were replaced: the marker is written again
    return root


def _write_cohort(root: Path, n: int, shape: tuple[int, ...]) -> Path:
    rng = np.random.default_rng(1)
    images = rng.random((n, *shape), dtype=np.float32)
    return write_cohort(root, images, [CohortRecord(index=i, patient=f"SYN-{i:06d}") for i in range(n)], {})


def measure(name: str, folder: Path, opener, module, repeats: int) -> dict:
    from synthmed.data.array_store import open_array
    from synthmed.data.values import check_values

    opened = median_time(lambda: opener(folder), repeats)
    value_pass = median_time(lambda: check_values(open_array(folder / "images.npy"), "x"), repeats)
    read = median_time(lambda: full_read(folder / "images.npy"), repeats)
    size = (folder / "images.npy").stat().st_size / 2**20
    print(f"{name:34s} {size:5.0f} MiB  Cohort/Dataset.open {opened:6.3f} s, of which the value pass "
          f"{value_pass:6.3f} s = {value_pass / read:4.2f}x one full read of images.npy "
          f"({read:.3f} s)", flush=True)
    return {"name": name, "open_s": opened, "value_pass_s": value_pass, "full_read_s": read}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-open-") as tmp:
        tmp = Path(tmp)
        cases = [
            ("NIH-sized dataset, 1000 x 64x64", _write_dataset(tmp / "nih", 1000, (64, 64)), Dataset.open, None),
            ("knee-sized dataset, 8260 x 64x64", _write_dataset(tmp / "knee", 8260, (64, 64)), Dataset.open, None),
            ("MRI-3D dataset, 260 x 48x56x48", _write_dataset(tmp / "mri", 260, (48, 56, 48)), Dataset.open, None),
            ("cohort, 10000 x 64x64", _write_cohort(tmp / "c64", 10000, (64, 64)), Cohort.open, None),
            ("cohort, 10000 x 128x128", _write_cohort(tmp / "c128", 10000, (128, 128)), Cohort.open, None),
        ]
        for name, folder, opener, module in cases:
            measure(name, folder, opener, module, args.repeats)


if __name__ == "__main__":
    main()
