"""Write tiny synthmed datasets (the `Dataset` format) for tests, without ingestion.

`make_toy_dataset(root, n_patients, images_per_patient, shape)` writes images.npy, manifest.csv,
dataset.json and ingest_report.json. Images are simple anatomy-like blobs whose content depends on
the conditions, so tests can check that conditioning matters:

- a soft "body" ellipse whose brightness rises with age and whose width differs by sex;
- for each label j present, a bright spot at a label-specific place.

Patients are split (by patient) into train / holdout / reference.
"""

from __future__ import annotations

import csv

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from synthmed.data.dataset import DATASET_SCHEMA
from synthmed.data.records import ImageRecord, write_records
from synthmed.io import folders
from synthmed.io.atomic import save_npy, write_json
from synthmed.provenance import sha256_bytes


def toy_image(shape: Sequence[int], labels: Sequence[int], age: float, sex: str,
              rng: np.random.Generator, n_labels: int) -> np.ndarray:
    """One image in [0, 1]: body ellipse + one bright spot per present label index."""
    shape = tuple(shape)
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    width = 0.75 if sex == "M" else 0.6
    radii = [0.8] * (len(shape) - 1) + [width]
    jitter = rng.normal(0, 0.04, size=len(shape))
    r2 = sum(((g - j) / r) ** 2 for g, j, r in zip(grids, jitter, radii))
    level = 0.25 + 0.4 * np.clip((age if np.isfinite(age) else 50.0) / 100.0, 0, 1)
    img = level / (1 + np.exp((r2 - 1) * 12))
    for j in labels:
        # Label spots sit on a ring inside the body, one angle per label.
        ang = 2 * np.pi * (j + 0.5) / max(n_labels, 1)
        centre = [0.0] * (len(shape) - 2) + [0.45 * np.sin(ang), 0.35 * np.cos(ang)]
        d2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
        img = img + 0.6 * np.exp(-d2 / (2 * 0.12 ** 2))
    img = img + rng.normal(0, 0.01, size=shape)
    return np.clip(img, 0, 1).astype(np.float32)


def make_toy_dataset(root: str | Path, n_patients: int = 12, images_per_patient: int = 2,
                     shape: Sequence[int] = (16, 16),
                     labels: Sequence[str] = ("Effusion", "Mass"), seed: int = 0,
                     label_rate: float = 0.4, split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                     missing_age_rate: float = 0.0) -> Path:
    """Write a toy dataset to `root` and return it. 2D if `shape` has 2 entries, 3D with 3."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    patients = [f"P-{i:012x}" for i in rng.choice(16**12, size=n_patients, replace=False)]
    n_train = max(1, int(round(split_fractions[0] * n_patients)))
    n_hold = int(round(split_fractions[1] * n_patients))
    split_of = {p: ("train" if i < n_train else "holdout" if i < n_train + n_hold else "reference")
                for i, p in enumerate(patients)}
    images, records = [], []
    for p in patients:
        age = float(rng.integers(20, 90))
        if rng.random() < missing_age_rate:
            age = float("nan")
        sex = str(rng.choice(["F", "M"]))
        for k in range(images_per_patient):
            present = [j for j in range(len(labels)) if rng.random() < label_rate]
            images.append(toy_image(shape, present, age, sex, rng, len(labels)))
            records.append(ImageRecord(
                index=len(records), patient=p, study=f"S-{len(records):012x}",
                series=f"R-{len(records):012x}", split=split_of[p],
                labels=tuple(labels[j] for j in present), age=age, sex=sex, modality="OT",
                source_format="toy", original_shape=shape, original_spacing=(1.0,) * len(shape)))
    arr = np.stack(images)
    save_npy(root / "images.npy", arr)
    write_records(root / "manifest.csv", records, ImageRecord)
    splits = {s: {"patients": len({r.patient for r in records if r.split == s}),
                  "images": sum(r.split == s for r in records)}
              for s in ("train", "holdout", "reference")}
    write_json(root / "dataset.json", {
        "schema": DATASET_SCHEMA, "spatial_dims": len(shape), "shape": list(shape),
        "spacing": [1.0] * len(shape), "normalisation": "toy images already in [0, 1]",
        "label_vocabulary": list(labels), "splits": splits,
        "fingerprint": sha256_bytes(arr.tobytes() + json.dumps([r.split for r in records]).encode()),
        "provenance": {"seed": seed, "source": "tests/helpers_dataset.py"},
    })
    write_json(root / "ingest_report.json", {"read": len(records), "kept": len(records), "refused": []})
    folders.stamp(root, "dataset")  # the commit point, as ingest makes it
    return root


def edit_manifest(path: Path, edit) -> None:
    """Rewrite a manifest.csv by hand, as a user editing it would: `edit(rows) -> rows`."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    fields = list(rows[0])
    rows = edit(rows)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
