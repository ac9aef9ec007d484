"""What every reader hands to ingestion, whatever the file format.

Readers (`synthmed.io.dicom`, `synthmed.io.nifti`, `synthmed.io.raster`, `synthmed.io.npz`) turn
files into `LoadedImage`s whose identifiers are *already* pseudonymised: no raw identifying
value ever leaves a reader. A file that cannot or must not be used raises `RefusedInput`
with a one-line reason; ingestion records it and goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthmed.errors import InputError


class RefusedInput(InputError):
    """A file that is read but not kept: `path` and a short human `reason`."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class BrokenFile(RefusedInput):
    """A refusal for damage to this one file (cut off, corrupt, unreadable), as opposed to one
    about what a whole series is: a series reader may go on without the file."""


@dataclass
class LoadedImage:
    """One 2D image or 3D volume in physical units, ready for normalisation.

    `array` is float32, (H, W) for 2D or (D, H, W) for 3D with D along the slice normal
    (DICOM: sorted by position; NIfTI: transposed from (x, y, z) to (z, y, x)).
    `spacing` matches `array.shape` in mm (NaN where unknown).
    `patient`, `study`, `series` are keyed pseudonyms (never raw identifiers).
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    patient: str
    study: str = ""
    series: str = ""
    labels: tuple[str, ...] = field(default_factory=tuple)
    age: float = math.nan
    sex: str = ""
    modality: str = ""  # DICOM modality code: CT, MR, CR, DX, ... ("" when unknown)
    source_format: str = ""  # dicom, dicom-multiframe, nifti, png, jpeg, npz
    source: str = ""  # the input path, for error messages only; never written to outputs
    original_shape: tuple[int, ...] = field(default_factory=tuple)
