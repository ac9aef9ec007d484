"""Shared helpers for the audit tests: the NIH chest X-rays split by patient, loaded once."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import numpy as np


def load_png_table(root: Path, file_column: str, patient_column: str) -> tuple[np.ndarray, np.ndarray]:
    """A shared-data folder of grey PNGs (images/ + metadata.csv), read in place: (images (N, H, W)
    float32 in [0, 1], patient ids (N,) str) in the CSV's order."""
    from PIL import Image

    images, patients = [], []
    with open(root / "metadata.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            with Image.open(root / "images" / row[file_column]) as im:
                images.append(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)
            patients.append(row[patient_column])
    return np.stack(images), np.array(patients)


@functools.lru_cache(maxsize=2)
def load_nih(root: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 64, 64) float32 in [0, 1], patient ids (N,) str), PNGs read with PIL."""
    return load_png_table(Path(root), "Image Index", "Patient ID")


def load_knee(root) -> tuple[np.ndarray, np.ndarray]:
    """The knee set: both knees of each patient (file names PATIENTID + L / R)."""
    return load_png_table(Path(root), "file", "patient_id")


def split_by_patient(patients: np.ndarray, fractions: tuple[float, ...], seed: int = 0) -> list[np.ndarray]:
    """Image indices of each part; every patient's images fall in exactly one part.

    Patients are shuffled and dealt out until each part holds its fraction of the IMAGES (one
    patient has 66 follow-ups, so dealing by patient count would unbalance the parts).
    """
    rng = np.random.default_rng(seed)
    uniq = np.unique(patients)
    rng.shuffle(uniq)
    counts = {p: int(np.sum(patients == p)) for p in uniq}
    targets = np.cumsum(fractions) / np.sum(fractions) * len(patients)
    parts: list[list[str]] = [[] for _ in fractions]
    done, j = 0, 0
    for p in uniq:
        while j < len(fractions) - 1 and done >= targets[j]:
            j += 1
        parts[j].append(p)
        done += counts[p]
    return [np.nonzero(np.isin(patients, part))[0] for part in parts]
