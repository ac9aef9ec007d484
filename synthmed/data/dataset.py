"""A dataset as ingestion writes it, opened for training and auditing.

Layout of a dataset folder::

    images.npy          float32, (N, H, W) or (N, D, H, W), intensities normalised to [0, 1]
    manifest.csv        one ImageRecord per image, row i describes images.npy[i]
    dataset.json        shape, spatial dims, spacing, normalisation, label vocabulary, splits
    ingest_report.json  what was read, kept and refused, and why
    synthmed-folder.json  the folder marker (synthmed/io/folders.py): kind, per-file sha256

Every identifier in it is a keyed pseudonym; splits are by patient. `Dataset.open` checks the
marker against the files, so a manifest edited by hand (a patient moved to another split) is
refused, and `fingerprint()` is computed from the bytes read, never copied from dataset.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthmed.data import values
from synthmed.data.array_store import read_images
from synthmed.data.records import ImageRecord, read_manifest
from synthmed.data.values import check_manifest, check_shape, intensity_range, read_folder_json
from synthmed.errors import InputError, arg
from synthmed.io import folders

DATASET_SCHEMA = "synthmed.dataset/1"
SPLITS = ("train", "holdout", "reference")


def dataset_fingerprint(images_sha256: str, manifest_sha256: str) -> str:
    """A dataset's identity: what a model was trained on (its images and who they are)."""
    import hashlib

    return hashlib.sha256(f"images.npy\0{images_sha256}\nmanifest.csv\0{manifest_sha256}\n"
                          .encode()).hexdigest()


def check_trained_on(dataset: "Dataset", trained_on: str, what: str,
                     allow_other: bool = False) -> bool:
    """Is `dataset` the one `what` (a model, a cohort's model) was trained on? Refused when not,
    unless `allow_other`; returns True when it is another dataset (the caller records that).
    An unknown `trained_on` (a record without one) cannot be compared and is allowed."""
    if not trained_on or trained_on == dataset.fingerprint():
        return False
    if allow_other:
        return True
    raise InputError(f"{dataset.root}: is not the dataset {what} was trained on (its fingerprint "
                     f"{dataset.fingerprint()[:12]}..., trained on {trained_on[:12]}...); pass "
                     f"{arg('allow_other_dataset', True)} to go on anyway")


@dataclass
class Dataset:
    root: Path
    info: dict[str, Any]
    records: list[ImageRecord]
    images: np.ndarray  # memory-mapped, read-only
    folder: "folders.FolderInfo | None" = None

    @classmethod
    def open(cls, path: str | Path, check_values: bool = True,
             quick_verify: bool = False) -> "Dataset":
        """Open a dataset folder; every file is checked and any problem is one line naming it.

        The images are checked to be finite and inside the range dataset.json records (one
        chunked min/max pass over the memory map); `check_values=False` leaves that to callers
        that check the rows they read (training reads only the train split, and never touches
        the holdout's pixels). The folder's marker is checked against every file's sha256;
        `quick_verify` (for readers that certify nothing, `inspect`) skips hashing files whose size
        and mtime are the marker's (synthmed/io/folders.py `verify`).
        """
        root = Path(path)
        for name in ("images.npy", "manifest.csv", "dataset.json"):
            if not (root / name).is_file():
                raise InputError(f"{root}: not a synthmed dataset ({name} is missing); "
                                 "make one with `synthmed ingest`")
        info = read_folder_json(root / "dataset.json", DATASET_SCHEMA, ("spatial_dims", "shape"))
        try:
            value_range = intensity_range(info)
            spatial_dims, shape = int(info["spatial_dims"]), [int(s) for s in info["shape"]]
        except (TypeError, ValueError) as err:
            raise InputError(f"{root / 'dataset.json'}: {err}") from None
        images = read_images(root / "images.npy")
        check_shape(images, root / "images.npy", spatial_dims, shape)
        records = read_manifest(root / "manifest.csv", ImageRecord)
        if len(records) != images.shape[0]:
            raise InputError(f"{root}: manifest.csv has {len(records)} rows but images.npy "
                             f"holds {images.shape[0]} images")
        check_manifest(records, images.shape[0], root / "manifest.csv", SPLITS)
        if check_values:
            values.check_values(images, root / "images.npy", value_range)
        # Last, so that a broken file gets its own message above; any other change since the
        # dataset was written (an edited manifest above all) is refused here.
        folder = folders.verify(root, "dataset", quick=quick_verify)
        return cls(root=root, info=info, records=records, images=images, folder=folder)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def spatial_dims(self) -> int:
        return int(self.info["spatial_dims"])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    @property
    def label_vocabulary(self) -> list[str]:
        return list(self.info.get("label_vocabulary", []))

    @property
    def patient_ids(self) -> np.ndarray:
        return np.array([r.patient for r in self.records])

    def indices(self, split: str) -> np.ndarray:
        """Image indices of one split ('train', 'holdout' or 'reference')."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        idx = np.array([r.index for r in self.records if r.split == split], dtype=np.int64)
        return idx

    def require_split(self, split: str) -> np.ndarray:
        idx = self.indices(split)
        if idx.size == 0:
            raise InputError(f"{self.root}: the dataset has no '{split}' split; re-ingest with a "
                             f"config that makes one")
        return idx

    def patients(self, split: str | None = None) -> list[str]:
        return sorted({r.patient for r in self.records if split is None or r.split == split})

    def label_matrix(self) -> np.ndarray:
        """(N, L) multi-hot float32 matrix over `label_vocabulary`."""
        vocab = {name: j for j, name in enumerate(self.label_vocabulary)}
        m = np.zeros((len(self.records), len(vocab)), dtype=np.float32)
        for r in self.records:
            for lab in r.labels:
                if lab in vocab:
                    m[r.index, vocab[lab]] = 1.0
        return m

    def ages(self) -> np.ndarray:
        return np.array([r.age for r in self.records], dtype=np.float32)

    def sexes(self) -> np.ndarray:
        return np.array([r.sex for r in self.records])

    def fingerprint(self) -> str:
        """Hash of the images and manifest as read and verified on open (not dataset.json's copy)."""
        if self.folder is None:
            raise ValueError("Dataset built without open(): no verified fingerprint")
        return dataset_fingerprint(self.folder.sha256("images.npy"),
                                   self.folder.sha256("manifest.csv"))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"images": len(self), "patients": len(self.patients()),
                               "shape": list(self.shape), "spatial_dims": self.spatial_dims,
                               "splits": {}}
        for split in SPLITS:
            recs = [r for r in self.records if r.split == split]
            if not recs:
                continue
            ages = [r.age for r in recs if not math.isnan(r.age)]
            labels: dict[str, int] = {}
            for r in recs:
                for lab in r.labels:
                    labels[lab] = labels.get(lab, 0) + 1
            sexes: dict[str, int] = {}
            for r in recs:
                sexes[r.sex or "unknown"] = sexes.get(r.sex or "unknown", 0) + 1
            out["splits"][split] = {
                "patients": len({r.patient for r in recs}),
                "images": len(recs),
                "labels": dict(sorted(labels.items())),
                "sex": dict(sorted(sexes.items())),
                "age": ({"min": min(ages), "median": float(np.median(ages)), "max": max(ages)}
                        if ages else None),
            }
        return out
