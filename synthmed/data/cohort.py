"""A synthetic cohort: generated images plus who they claim to be.

Layout of a cohort folder::

    images.npy     float32, (N, H, W) or (N, D, H, W), in [0, 1], the dataset's shape
    manifest.csv   one CohortRecord per image (synthetic patient id, labels, age, sex)
    cohort.json    shape, spatial dims, label vocabulary, and provenance (config, model hash,
                   seed, package versions)
    synthmed-folder.json  the folder marker (synthmed/io/folders.py), checked on open

A cohort made by `synthmed generate` / `synthmed sample` (synthmed/generate/runner.py) holds the
same three files, with one row per study (several per virtual patient: `study_index`,
`days_since_first`, `study_date`, ...), plus manifest.parquet, the requested formats (dicom/,
nifti/, png/), DATA_CARD.md, data_card.json, provenance/ and SHA256SUMS; `Cohort.open` reads the
arrays and rows, and the marker covers every file.

`Cohort.open` also takes a plain folder of images (PNG / JPEG / .npy / NIfTI): each file is one
synthetic patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthmed.data.array_store import read_images
from synthmed.data.records import CohortRecord, read_manifest, write_records
from synthmed.data.values import (DEFAULT_RANGE, check_manifest, check_shape, check_values,
                                  read_folder_json)
from synthmed.errors import InputError
from synthmed.io import folders
from synthmed.io.atomic import save_npy, write_json

COHORT_SCHEMA = "synthmed.cohort/1"
_PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy", ".nii", ".nii.gz")


@dataclass
class Cohort:
    root: Path
    info: dict[str, Any]
    records: list[CohortRecord]
    images: np.ndarray
    folder: "folders.FolderInfo | None" = None

    @classmethod
    def open(cls, path: str | Path, value_range: tuple[float, float] = DEFAULT_RANGE) -> "Cohort":
        """Open a cohort folder (or a plain folder of images); every file is checked, and images
        must be finite and inside `value_range` (the dataset's normalised range)."""
        root = Path(path)
        if not root.exists():
            raise InputError(f"{root}: cohort folder does not exist")
        if not root.is_dir():
            raise InputError(f"{root}: is a file, not a cohort folder")
        if (root / "images.npy").is_file() and (root / "manifest.csv").is_file():
            info: dict[str, Any] = {}
            shape = None
            if (root / "cohort.json").is_file():
                info = read_folder_json(root / "cohort.json", COHORT_SCHEMA)
                shape = info.get("shape")
                if shape is not None and not (isinstance(shape, list)
                                              and all(isinstance(v, int) for v in shape)):
                    raise InputError(f"{root / 'cohort.json'}: shape must be a list of integers, "
                                     f"got {shape!r}")
            images = read_images(root / "images.npy")
            check_shape(images, root / "images.npy", None, shape)
            records = read_manifest(root / "manifest.csv", CohortRecord)
            if len(records) != images.shape[0]:
                raise InputError(f"{root}: manifest.csv has {len(records)} rows but images.npy "
                                 f"holds {images.shape[0]} images")
            check_manifest(records, images.shape[0], root / "manifest.csv")
            check_values(images, root / "images.npy", value_range)
            folder = folders.verify(root, "cohort")  # last: a broken file has its own message
            return cls(root, info, records, images, folder)
        return cls._open_plain_folder(root, value_range)

    @classmethod
    def _open_plain_folder(cls, root: Path, value_range: tuple[float, float]) -> "Cohort":
        files = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(_PLAIN_SUFFIXES))
        if not files:
            raise InputError(f"{root}: no cohort (images.npy + manifest.csv) and no image files "
                             f"({', '.join(_PLAIN_SUFFIXES)})")
        arrays = [_read_plain_image(p, value_range) for p in files]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise InputError(f"{root}: images have different shapes {sorted(shapes)}; "
                             "a cohort needs one shape")
        images = np.stack(arrays).astype(np.float32)
        records = [CohortRecord(index=i, patient=f"SYN-{i:06d}") for i in range(len(files))]
        info = {"schema": COHORT_SCHEMA, "spatial_dims": images.ndim - 1,
                "shape": list(images.shape[1:]), "source": "plain image folder"}
        return cls(root, info, records, images)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def patient_ids(self) -> np.ndarray:
        return np.array([r.patient for r in self.records])

    def fingerprint(self) -> str:
        """sha256 of images.npy as verified on open (of the pixels, for a plain image folder)."""
        if self.folder is not None:
            return self.folder.sha256("images.npy")
        return _sha_array(np.asarray(self.images))


def _sha_array(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _read_plain_image(path: Path, value_range: tuple[float, float]) -> np.ndarray:
    """PNG / JPEG are 8-bit and read as v / 255; arrays (.npy, NIfTI) must already hold normalised
    values: a per-image rescale would turn any scale, x1000 included, into something auditable."""
    name = path.name.lower()
    try:
        if name.endswith(".npy"):
            a = np.load(path, allow_pickle=False).astype(np.float32)
        elif name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            a = np.asarray(nib.load(str(path)).get_fdata(), dtype=np.float32)
            # NIfTI stores (x, y, z); synthmed arrays are (z, y, x) like DICOM volumes.
            a = np.transpose(a, tuple(range(a.ndim))[::-1])
        else:
            from PIL import Image

            with Image.open(path) as im:
                a = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            return a
    except Exception as err:  # noqa: BLE001 - any reader failure is a bad input file
        raise InputError(f"{path}: cannot read image ({err})") from None
    check_values(a[None], path, value_range)
    return a


def write_cohort(root: str | Path, images: np.ndarray, records: list[CohortRecord],
                 info: dict[str, Any], overwrite: bool = False) -> Path:
    """Write a cohort folder as a whole: built in a staging folder beside `root`, stamped, then
    moved into place (an existing cohort is replaced only with `overwrite`)."""
    root = Path(root)
    images = np.asarray(images, dtype=np.float32)
    if len(records) != images.shape[0]:
        raise ValueError("one record per image")
    meta = {"schema": COHORT_SCHEMA, "spatial_dims": images.ndim - 1,
            "shape": list(images.shape[1:]), "n_images": int(images.shape[0]), **info}
    with folders.staged_output(root, "cohort", overwrite) as stage:
        save_npy(stage / "images.npy", images)
        write_records(stage / "manifest.csv", records, CohortRecord)
        write_json(stage / "cohort.json", meta)
    return root
