"""From a sampled image in [0, 1] to stored integers and the units they stand for.

Every format of a study carries the same numbers: DICOM stores `stored` with `slope` and
`intercept` as its modality LUT; NIfTI stores the same integers with the same scl_slope /
scl_inter, so pydicom, MONAI and nibabel all read `stored * slope + intercept`.

- CT: the dataset's normalisation window (lo, hi) maps [0, 1] back to HU, value = lo + x (hi - lo).
  When the window is at most 65535 HU wide the stored integers are HU - lo (slope 1, the
  scanner's own resolution of 1 HU); wider windows spread 65536 levels over it.
- DX and MR: [0, 1] at full 16-bit resolution (slope 1, intercept 0). Their windows are per
  image percentiles (see data/normalise.py), so there is no physical unit to map back to.
- PNG holds the windowed image at 16 bit, round(x * 65535), for every modality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydicom.valuerep import format_number_as_ds

from synthmed.errors import InputError

FULL_SCALE = 65535


def _as_ds(value: float) -> float:
    """`value` as DICOM will hold it (a DS string of at most 16 characters), read back."""
    return float(format_number_as_ds(float(value)))


def ds_text(value: float) -> str:
    return format_number_as_ds(float(value))


@dataclass(frozen=True)
class Encoded:
    """One image as stored integers and the linear map back to its units."""

    stored: np.ndarray   # uint16, the image's shape
    slope: float         # exactly representable as DICOM DS
    intercept: float
    units: str           # "HU" for CT; "" (arbitrary, normalised) otherwise
    window: tuple[float, float]  # the values [0, 1] maps to: the display window

    def values(self) -> np.ndarray:
        """What a reader applying the modality LUT gets (float64)."""
        return self.stored.astype(np.float64) * self.slope + self.intercept


def full_scale(image: np.ndarray) -> np.ndarray:
    """[0, 1] -> uint16 over the full range (NaN-safe: non-finite values are refused upstream)."""
    a = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    return np.round(a * FULL_SCALE).astype(np.uint16)


def encode(image: np.ndarray, modality: str, window: tuple[float, float] | None) -> Encoded:
    image = np.asarray(image)
    if not np.isfinite(image).all():
        raise InputError("a sampled image holds NaN or infinite values; nothing was written")
    if modality != "CT":
        return Encoded(full_scale(image), 1.0, 0.0, "", (0.0, float(FULL_SCALE)))
    if window is None:
        raise InputError("CT output needs the dataset's intensity window (CohortContext."
                         "intensity_window) to map [0, 1] back to HU")
    lo, hi = (float(w) for w in window)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise InputError(f"CT intensity window {window} is not a range (low < high)")
    intercept = _as_ds(lo)
    width = hi - lo
    slope = 1.0 if width <= FULL_SCALE else _as_ds(width / FULL_SCALE)
    x = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    # Rounding against the DS-rounded intercept keeps |value - (lo + x * width)| <= slope / 2.
    stored = np.round((lo + x * width - intercept) / slope)
    stored = np.clip(stored, 0, FULL_SCALE).astype(np.uint16)
    return Encoded(stored, slope, intercept, "HU", (lo, hi))
