"""DICOM geometry: pixel spacing, slice normal, ordering slices into volumes, slice spacing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from synthmed.io.types import RefusedInput

_POSITION_DECIMALS = 2  # positions equal to 0.01 mm are the same slice location


def _floats(value, n: int) -> np.ndarray | None:
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.size == n and np.all(np.isfinite(arr)) else None


def _pixel_spacing(ds: Dataset) -> tuple[float, float]:
    for kw in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        sp = _floats(ds.get(kw), 2) if kw in ds else None
        if sp is not None and np.all(sp > 0):
            return float(sp[0]), float(sp[1])
    return math.nan, math.nan


def _shape_signature(ds: Dataset) -> tuple:
    return (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0),
            int(ds.get("NumberOfFrames", 1) or 1), int(ds.get("SamplesPerPixel", 1) or 1))


def _slice_normal(iop: np.ndarray | None) -> np.ndarray | None:
    if iop is None:
        return None
    n = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 1e-6 else None


def _split_volumes(proj: np.ndarray, order_keys: list[tuple], path: Path) -> list[np.ndarray]:
    """Indices of each volume, slices sorted along the normal.

    Repeated positions (a time series: fMRI, perfusion) are split into volumes: at each position
    the k-th acquisition (by temporal position, acquisition number, instance number) goes to
    volume k, so every volume covers every position once.
    """
    rounded = np.round(proj, _POSITION_DECIMALS)
    positions, inverse, counts = np.unique(rounded, return_inverse=True, return_counts=True)
    repeats = int(counts[0])
    if np.any(counts != repeats):
        raise RefusedInput(path, f"slice positions repeat unevenly ({int(counts.min())} to {int(counts.max())} "
                                 "images per position): incomplete time series?")
    vols = np.empty((repeats, positions.size), dtype=np.int64)
    for p in range(positions.size):
        members = np.flatnonzero(inverse == p)
        members = sorted(members, key=lambda i: order_keys[i])
        vols[:, p] = members
    return [vols[k] for k in range(repeats)]


def _check_no_gap(sorted_proj: np.ndarray, path: Path) -> None:
    """Refuse a volume whose slice positions jump: a slice file is missing (not in the input,
    or refused at the scan), and stacking the rest would make anatomy that is not there.

    A step more than 1.5 times the median step (and 0.1 mm more) is a gap; equal steps within
    rounding, and a last slice at a slightly different step, are not. Needs 3 slices."""
    if sorted_proj.size < 3:
        return
    steps = np.diff(sorted_proj)
    median = float(np.median(steps))
    worst = float(steps.max())
    if median > 0 and worst > 1.5 * median + 0.1:
        missing = int(round(worst / median)) - 1
        raise RefusedInput(path, f"series incomplete: slice positions jump by {worst:.2f} mm where "
                                 f"the series steps {median:.2f} mm (about {max(missing, 1)} "
                                 "slice(s) missing); a 3D volume needs every slice")


def _z_spacing(sorted_proj: np.ndarray, ds: Dataset) -> float:
    if sorted_proj.size > 1:
        return float(np.median(np.diff(sorted_proj)))
    for kw in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            v = float(ds.get(kw))
            if v > 0:
                return v
        except (TypeError, ValueError):
            pass
    return math.nan


def _num(ds: Dataset, kw: str) -> float:
    try:
        return float(ds.get(kw))
    except (TypeError, ValueError):
        return math.inf  # missing sorts last



def _frame_geometry(ds: Dataset, nframes: int):
    """Per-frame positions, the orientation and temporal order keys from functional groups."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared = shared[0] if shared else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")

    def _from(item, seq, kw, n):
        if item is None or seq not in item or not item[seq].value:
            return None
        inner = item[seq][0]
        return _floats(inner.get(kw), n) if kw in inner else None

    iop = _from(shared, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
    spacing = _from(shared, "PixelMeasuresSequence", "PixelSpacing", 2)
    positions, keys = [], []
    for f in range(nframes):
        item = per_frame[f] if per_frame is not None and f < len(per_frame) else None
        positions.append(_from(item, "PlanePositionSequence", "ImagePositionPatient", 3))
        if iop is None:
            iop = _from(item, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
        if spacing is None:
            spacing = _from(item, "PixelMeasuresSequence", "PixelSpacing", 2)
        temporal = math.inf
        if item is not None and "FrameContentSequence" in item and item.FrameContentSequence:
            fc = item.FrameContentSequence[0]
            temporal = _num(fc, "TemporalPositionIndex")
            if math.isinf(temporal):
                temporal = _num(fc, "FrameAcquisitionNumber")
        keys.append((temporal, f))
    if iop is None and "ImageOrientationPatient" in ds:
        iop = _floats(ds.ImageOrientationPatient, 6)
    if all(p is None for p in positions) and "DetectorInformationSequence" in ds:
        # NM: one start position and a constant spacing along the normal.
        det = ds.DetectorInformationSequence[0]
        iop = _floats(det.get("ImageOrientationPatient"), 6) if "ImageOrientationPatient" in det else iop
    return iop, spacing, positions, keys


