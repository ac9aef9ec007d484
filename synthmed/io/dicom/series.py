"""Pass 2 of DICOM reading: one series into de-identified 2D images or 3D volumes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from synthmed.deid import Deidentifier
from synthmed.deid.dicom_deid import quiet_pydicom
from synthmed.io.dicom.decode import (_FastSlices, _decoded, _pixels_multiframe, _read_full,
                                      _write_rescaled)
from synthmed.io.dicom.geometry import (_floats, _frame_geometry, _num, _pixel_spacing,
                                        _check_no_gap, _shape_signature, _slice_normal, _split_volumes,
                                        _z_spacing)
from synthmed.io.dicom.policy import PROJECTION_MODALITIES, _check_decodable, _refuse_by_policy, _transfer_syntax
from synthmed.io.dicom.scan import DicomSeries, HeaderCache, _text
from synthmed.io.dicom.decode import _slice_key
from synthmed.io.types import LoadedImage, RefusedInput

def _parse_age(value: str) -> float:
    """DICOM AS ('057Y', '006M', '010W', '003D', also a bare '42') -> years."""
    v = value.strip().upper()
    if not v:
        return math.nan
    unit = v[-1] if v[-1] in "YMWD" else "Y"
    digits = v[:-1] if v[-1] in "YMWD" else v
    try:
        n = float(digits)
    except ValueError:
        return math.nan
    return n / {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}[unit]


def _sex(value: str) -> str:
    v = value.strip().upper()
    return v if v in ("M", "F") else ("O" if v else "")



def load_series(series: DicomSeries, deid: Deidentifier, *, allow_burned_in: bool = False,
                allowed_modalities: frozenset[str] | None = None,
                headers: HeaderCache | None = None, allow_gaps: bool = True) -> list[LoadedImage]:
    """Decode one series into de-identified 2D images or 3D volumes (see the module docstring).

    `allowed_modalities` lists modalities refused by default (US, SC, OT, and non-images such as
    SEG) to accept anyway; `allow_burned_in` accepts BurnedInAnnotation YES. Raises RefusedInput
    for the whole series when it must not or cannot be used. `headers` is the scan's cache
    (default: the one the series was found with, if any). `allow_gaps=False` refuses a volume
    whose slice positions jump (a slice missing); 2D use of the slices does not need it.
    """
    headers = headers if headers is not None else series.headers
    try:
        with quiet_pydicom() as caught:
            return _load_series(series, deid, allow_burned_in, allowed_modalities, caught, headers,
                                allow_gaps)
    except (TypeError, ValueError, OverflowError) as err:
        # A header value that is not what its VR promises; Python's message would quote it.
        where = series.files[0] if series.files else ""
        raise RefusedInput(where, "a header value is malformed (not a valid number or code; "
                                  f"{type(err).__name__})") from None
    finally:
        if headers is not None:
            for f in series.files:  # a refused series leaves no cached headers behind
                headers.pop(f)


def _load_series(series: DicomSeries, deid: Deidentifier, allow_burned_in: bool,
                 allowed_modalities: frozenset[str] | None, caught: list,
                 headers: HeaderCache | None, allow_gaps: bool = True) -> list[LoadedImage]:
    if not series.files:
        return []
    first_path = series.files[0]
    first = _read_full(first_path, headers)
    first_key = _slice_key(first, first)  # raw values, before anything converts them
    _refuse_by_policy(first, first_path, allow_burned_in, allowed_modalities)
    _check_decodable(first, first_path)
    deid.deidentify(first)  # before any identity value is taken from the header
    meta = _identity(first, series, deid)

    separate = (len(series.files) == 1 or int(first.get("NumberOfFrames", 1) or 1) > 1
                or meta["modality"] in PROJECTION_MODALITIES
                or "ImageOrientationPatient" not in first or "ImagePositionPatient" not in first)
    if separate:
        out: list[LoadedImage] = []
        for i, path in enumerate(series.files):
            ds = first if i == 0 else _read_full(path, headers)
            if i:
                _refuse_by_policy(ds, path, allow_burned_in, allowed_modalities)
                _check_decodable(ds, path)
            if (_shape_signature(ds)[2] > 1) != (_shape_signature(first)[2] > 1):
                raise RefusedInput(first_path, "mixed shapes in series (single- and multi-frame files)")
            out.extend(_load_file(ds, path, meta))
        return out

    signature = _shape_signature(first)
    first_ts = _transfer_syntax(first)
    slices: list[tuple[np.ndarray, float, float]] = []
    positions: list[np.ndarray | None] = []
    order_keys: list[tuple] = []
    fast = _FastSlices.for_series(first, first_key, first_ts, headers)
    for i, path in enumerate(series.files):
        if i and fast is not None:
            got = fast.read(path, caught)
            if got is not None:
                arr, position, order = got
                slices.append((arr, fast.slope, fast.intercept))
                positions.append(position)
                order_keys.append((*order, i))
                continue
        ds = first if i == 0 else _read_full(path, headers)
        if i:
            if _shape_signature(ds) != signature:
                r, c, f, s = _shape_signature(ds)
                raise RefusedInput(first_path, f"mixed shapes in series ({signature[0]}x{signature[1]} "
                                               f"and {r}x{c}{' multi-frame' if f > 1 else ''})")
            _refuse_by_policy(ds, path, allow_burned_in, allowed_modalities)
            if _transfer_syntax(ds) != first_ts:  # else the first file's check holds for this one
                _check_decodable(ds, path)
        arr, slope, intercept = _decoded(ds, path)
        if arr.ndim != 2:
            raise RefusedInput(path, f"unexpected pixel array shape {arr.shape}")
        if i == 0 and fast is not None:
            fast.slope, fast.intercept = slope, intercept
        slices.append((arr, slope, intercept))
        positions.append(_floats(ds.get("ImagePositionPatient"), 3) if "ImagePositionPatient" in ds else None)
        order_keys.append((_num(ds, "TemporalPositionIdentifier"), _num(ds, "AcquisitionNumber"),
                           _num(ds, "InstanceNumber"), i))
    row_sp, col_sp = _pixel_spacing(first)
    iop = _floats(first.get("ImageOrientationPatient"), 6) if "ImageOrientationPatient" in first else None
    normal = _slice_normal(iop)
    if normal is None or any(p is None for p in positions):
        # Orientation unusable or a slice without position: no trustworthy order along a normal.
        raise RefusedInput(first_path, "slices lack a usable position or orientation, "
                                       "so they cannot be ordered into a volume")
    proj = np.array([float(p @ normal) for p in positions])
    out = []
    for idx in _split_volumes(proj, order_keys, first_path):
        if not allow_gaps:
            _check_no_gap(proj[idx], first_path)
        vol = np.empty((len(idx), *slices[0][0].shape), dtype=np.float32)
        for k, i in enumerate(idx):
            _write_rescaled(vol[k], *slices[i])
        out.append(_image(vol, (_z_spacing(proj[idx], first), row_sp, col_sp), meta, "dicom", first_path))
    return out


def _identity(ds: Dataset, series: DicomSeries, deid: Deidentifier) -> dict:
    """Identity values from an already de-identified header: pseudonyms, age, sex, modality."""
    patient = _text(ds, "PatientID")  # the keyed pseudonym set by deidentify
    study_uid = _text(ds, "StudyInstanceUID")  # a replaced UID
    study = deid.study(study_uid or f"{patient}|{_text(ds, 'StudyDate')}")
    series_uid = _text(ds, "SeriesInstanceUID")
    return {
        "patient": patient,
        "study": study,
        "series": deid.series(series_uid or series.key),
        "age": _parse_age(_text(ds, "PatientAge")),
        "sex": _sex(_text(ds, "PatientSex")),
        "modality": _text(ds, "Modality").upper(),
    }


def _image(arr: np.ndarray, spacing: tuple[float, ...], meta: dict, fmt: str, path: Path) -> LoadedImage:
    if arr.ndim == 3 and arr.shape[0] == 1:  # a "volume" of one slice is a 2D image
        arr, spacing = arr[0], spacing[1:]
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return LoadedImage(array=arr, spacing=tuple(float(s) for s in spacing), patient=meta["patient"],
                       study=meta["study"], series=meta["series"], age=meta["age"], sex=meta["sex"],
                       modality=meta["modality"], source_format=fmt, source=str(path),
                       original_shape=tuple(arr.shape))



def _load_file(ds: Dataset, path: Path, meta: dict) -> list[LoadedImage]:
    """One file: a single 2D image, or a multi-frame file (volume, volumes, or cine frames)."""
    data = _pixels_multiframe(ds, path)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    row_sp, col_sp = _pixel_spacing(ds)
    if nframes == 1:
        if data.ndim == 3 and data.shape[0] == 1:
            data = data[0]
        if data.ndim != 2:
            raise RefusedInput(path, f"unexpected pixel array shape {data.shape}")
        return [_image(data, (row_sp, col_sp), meta, "dicom", path)]

    if data.ndim != 3:
        raise RefusedInput(path, f"unexpected pixel array shape {data.shape}")
    iop, spacing, positions, keys = _frame_geometry(ds, nframes)
    if spacing is not None and np.all(spacing > 0):
        row_sp, col_sp = float(spacing[0]), float(spacing[1])
    normal = _slice_normal(iop)
    if normal is not None and all(p is not None for p in positions):
        proj = np.array([float(p @ normal) for p in positions])
        return [_image(data[idx], (_z_spacing(proj[idx], ds), row_sp, col_sp), meta, "dicom-multiframe", path)
                for idx in _split_volumes(proj, keys, path)]
    increment = ds.get("FrameIncrementPointer")
    pointers = increment if isinstance(increment, (list, pydicom.multival.MultiValue)) else [increment]
    if any(p in (0x00181063, 0x00181065) for p in pointers if p is not None):
        # Cine (frame time / frame time vector): frames are moments, not slices.
        return [_image(data[f], (row_sp, col_sp), meta, "dicom-multiframe", path) for f in range(nframes)]
    # Frames without positions: a volume in stored order (NM, legacy enhanced); slice spacing
    # from the header when it has one.
    return [_image(data, (_z_spacing(np.array([]), ds), row_sp, col_sp), meta, "dicom-multiframe", path)]


