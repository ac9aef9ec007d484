"""Build Dataset folders for audit tests without the ingestion pipeline.

`write_dataset` writes the synthmed.dataset/1 layout (images.npy, manifest.csv, dataset.json,
ingest_report.json) from arrays; `nih_dataset` does it for ../shared/data/nih-cxr14-1000, split
by Patient ID (never one patient on both sides). Patient pseudonyms are hashes of the NIH IDs,
so no NIH identifier or file stem reaches any output.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from synthmed.data.records import ImageRecord, write_records
from synthmed.io import folders
from synthmed.io.atomic import save_npy, write_json
from synthmed.provenance import sha256_file


def pseudonym(raw: str) -> str:
    return "P-" + hashlib.sha256(f"test-helper:{raw}".encode()).hexdigest()[:12]


def write_dataset(root: Path, images: np.ndarray, patients: list[str], splits: list[str],
                  ages: list[float] | None = None, sexes: list[str] | None = None,
                  labels: list[tuple[str, ...]] | None = None) -> Path:
    root = Path(root)
    images = np.asarray(images, dtype=np.float32)
    n = images.shape[0]
    ages = ages or [float("nan")] * n
    sexes = sexes or [""] * n
    labels = labels or [()] * n
    records = [ImageRecord(index=i, patient=patients[i], study=f"S-{i:012x}", series=f"R-{i:012x}",
                           split=splits[i], labels=labels[i], age=ages[i], sex=sexes[i],
                           modality="DX", source_format="png",
                           original_shape=tuple(images.shape[1:]), original_spacing=(1.0,) * (images.ndim - 1))
               for i in range(n)]
    save_npy(root / "images.npy", images)
    write_records(root / "manifest.csv", records, ImageRecord)
    vocab = sorted({lab for labs in labels for lab in labs})
    counts = {s: {"images": int(sum(1 for x in splits if x == s)),
                  "patients": len({p for p, x in zip(patients, splits) if x == s})}
              for s in ("train", "holdout", "reference")}
    write_json(root / "dataset.json", {
        "schema": "synthmed.dataset/1", "spatial_dims": images.ndim - 1, "shape": list(images.shape[1:]),
        "spacing": [1.0] * (images.ndim - 1), "normalisation": {"method": "minmax"},
        "label_vocabulary": vocab, "splits": counts, "fingerprint": sha256_file(root / "images.npy"),
        "provenance": {"source": "tests/helpers_nih.py"}})
    write_json(root / "ingest_report.json", {"kept": n, "refused": []})
    folders.stamp(root, "dataset")  # the commit point, as ingest makes it
    return root


def split_patients(patients: list[str], fractions: dict[str, float], seed: int = 0) -> dict[str, str]:
    """Patient -> split, shuffled with `seed`, sizes by `fractions` (in order of the dict)."""
    uniq = sorted(set(patients))
    rng = np.random.default_rng(seed)
    rng.shuffle(uniq)
    out: dict[str, str] = {}
    start = 0
    names = list(fractions)
    for j, name in enumerate(names):
        stop = len(uniq) if j == len(names) - 1 else start + int(round(fractions[name] * len(uniq)))
        for p in uniq[start:stop]:
            out[p] = name
        start = stop
    return out


def load_nih(nih_root: Path) -> tuple[np.ndarray, list[str], list[float], list[str], list[tuple[str, ...]]]:
    """Images (N, 64, 64) in [0, 1] and per-image pseudonymous patient, age, sex, labels."""
    from PIL import Image

    rows = list(csv.DictReader(open(nih_root / "metadata.csv", newline="")))
    images, patients, ages, sexes, labels = [], [], [], [], []
    for row in rows:
        with Image.open(nih_root / "images" / row["Image Index"]) as im:
            images.append(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)
        patients.append(pseudonym(row["Patient ID"]))
        ages.append(float(row["Patient Age"]))
        sexes.append(row["Patient Gender"])
        found = tuple(x for x in row["Finding Labels"].split("|") if x and x != "No Finding")
        labels.append(found)
    return np.stack(images), patients, ages, sexes, labels


def ingest_nih(nih_root: Path, out: Path, holdout: float = 0.25, reference: float = 0.25,
               seed: int = 0) -> Path | None:
    """The NIH images through the real ingestion (`synthmed.data.ingest`), or None when it is not
    available. The de-identification key is a fixed test key written beside `out` (the NIH IDs
    are public; a fixed key keeps the pseudonyms, hence the member hashes, reproducible)."""
    try:
        from synthmed.data.ingest import ingest
        from synthmed.data.ingest_config import IngestConfig, SplitConfig
    except ImportError:
        return None
    key = Path(out).parent / f"{Path(out).name}.key"
    key.write_bytes(hashlib.sha256(b"synthmed test key").digest())
    cfg = IngestConfig(split=SplitConfig(holdout_fraction=holdout, reference_fraction=reference, seed=seed))
    ingest([nih_root / "images"], Path(out), config=cfg, metadata_csv=nih_root / "metadata.csv", key_path=key)
    return Path(out)


def nih_dataset(nih_root: Path, out: Path, fractions: dict[str, float] | None = None,
                seed: int = 0, use_ingest: bool = True) -> Path:
    """A Dataset folder of the NIH images, split by patient (default 50/25/25 train/holdout/reference):
    through `synthmed.data.ingest` when it exists, else written directly from the PNGs."""
    fractions = fractions or {"train": 0.5, "holdout": 0.25, "reference": 0.25}
    if use_ingest:
        made = ingest_nih(nih_root, out, fractions.get("holdout", 0.0), fractions.get("reference", 0.0), seed)
        if made is not None:
            return made
    images, patients, ages, sexes, labels = load_nih(nih_root)
    which = split_patients(patients, fractions, seed)
    splits = [which[p] for p in patients]
    return write_dataset(out, images, patients, splits, ages, sexes, labels)


def toy_dataset(out: Path, n_patients: int = 60, per_patient: int = 2, size: int = 16,
                fractions: dict[str, float] | None = None, seed: int = 0) -> Path:
    """Small smooth random images, a few per patient (patient images share a base pattern)."""
    rng = np.random.default_rng(seed)
    fractions = fractions or {"train": 0.5, "holdout": 0.25, "reference": 0.25}
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, patients = [], []
    for p in range(n_patients):
        fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.3)
        base = 0.5 + 0.35 * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
        for _ in range(per_patient):
            images.append(np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1))
            patients.append(pseudonym(f"toy-{p}"))
    which = split_patients(patients, fractions, seed)
    return write_dataset(out, np.stack(images), patients, [which[p] for p in patients])


# ------------------------------------------------------------------------- test generators
def kde_sampler(images: np.ndarray, n: int, bandwidth: float, seed: int = 0) -> np.ndarray:
    """A memorising generator: a Gaussian kernel density with a tiny bandwidth over `images`
    (pick a training image, add noise)."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, images.shape[0], size=n)
    return np.clip(images[pick] + rng.normal(0, bandwidth, size=(n, *images.shape[1:])), 0, 1).astype(np.float32)


def mixture_sampler(images: np.ndarray, n: int, noise: float = 0.03, seed: int = 0) -> np.ndarray:
    """A generator that never saw the members: convex mixtures of two of `images` plus noise
    (call it with the reference split)."""
    rng = np.random.default_rng(seed)
    a = images[rng.integers(0, images.shape[0], size=n)]
    b = images[rng.integers(0, images.shape[0], size=n)]
    w = rng.uniform(0.6, 1.0, size=(n,) + (1,) * (images.ndim - 1))
    x = w * a + (1 - w) * b + rng.normal(0, noise, size=a.shape)
    return np.clip(x, 0, 1).astype(np.float32)


def write_plain_cohort(root: Path, images: np.ndarray) -> Path:
    """A synthmed cohort folder (images.npy + manifest.csv + cohort.json), one patient per image."""
    from synthmed.data.cohort import write_cohort
    from synthmed.data.records import CohortRecord

    records = [CohortRecord(index=i, patient=f"SYN-{i:06d}") for i in range(images.shape[0])]
    return write_cohort(root, images, records, {"source": "tests/helpers_nih.py"})
