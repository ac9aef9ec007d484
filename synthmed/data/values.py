"""Checks on what a dataset or cohort folder holds, made when it is opened.

Everything downstream (training, the privacy audit, evaluation) assumes images are finite and in the
dataset's normalised range. A cohort scaled by 1000 is not a harder case for the audit, it is a
different quantity: its distances to the training images are meaningless and it could "pass" by
being far from everything. So such folders are refused with one line, never rescaled.

The value check reads the memory map in chunks of about `chunk_bytes`, with one min and one max
per chunk (NaN propagates through both, so no separate isfinite pass is needed); only a chunk that
fails is scanned again to name the first bad image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synthmed.errors import InputError

DEFAULT_RANGE = (0.0, 1.0)


def intensity_range(info: dict[str, Any]) -> tuple[float, float]:
    """The normalised range dataset.json records (`normalisation.range`), else [0, 1]."""
    norm = info.get("normalisation")
    rng = norm.get("range") if isinstance(norm, dict) else None
    if rng is None:
        return DEFAULT_RANGE
    try:
        lo, hi = (float(v) for v in rng)
    except (TypeError, ValueError):
        raise ValueError(f"normalisation.range must be [low, high], got {rng!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"normalisation.range must be finite with low < high, got {rng!r}")
    return lo, hi


def check_values(images: np.ndarray, source: str | Path, value_range: tuple[float, float] = DEFAULT_RANGE,
                 chunk_bytes: int = 64 << 20, index: np.ndarray | None = None) -> None:
    """Raise InputError naming `source` and the first bad image if any value is NaN, infinite or
    outside `value_range` (inclusive). `index[i]` is image i's number in `source` when `images`
    is a selection of its rows."""
    lo, hi = value_range
    n = int(images.shape[0]) if images.ndim else 0
    if n == 0:
        return
    row_bytes = max(1, int(np.prod(images.shape[1:], dtype=np.int64)) * images.dtype.itemsize)
    step = max(1, chunk_bytes // row_bytes)
    for start in range(0, n, step):
        chunk = np.asarray(images[start:start + step])
        mn, mx = chunk.min(), chunk.max()
        if lo <= mn and mx <= hi:  # False for NaN
            continue
        flat = chunk.reshape(chunk.shape[0], -1)
        bad_finite = ~np.isfinite(flat).all(axis=1)
        if bad_finite.any():
            i = int(np.argmax(bad_finite))
            what = "NaN" if np.isnan(flat[i]).any() else "infinite"
            raise InputError(f"{source}: image {_number(start + i, index)} holds {what} values; images must be "
                             f"finite and in [{lo:g}, {hi:g}]")
        i = int(np.argmax((flat.min(axis=1) < lo) | (flat.max(axis=1) > hi)))
        raise InputError(f"{source}: image {_number(start + i, index)} has values in [{float(flat[i].min()):.4g}, "
                         f"{float(flat[i].max()):.4g}], outside the normalised range [{lo:g}, {hi:g}]; "
                         "synthmed refuses such images rather than rescale them (normalise them as "
                         "the dataset was)")


def _number(i: int, index: np.ndarray | None) -> int:
    return int(index[i]) if index is not None else i


def check_shape(images: np.ndarray, source: str | Path, spatial_dims: int | None = None,
                shape: Sequence[int] | None = None) -> None:
    """The array is (N, *shape) of a float dtype, with `spatial_dims` spatial axes."""
    if images.dtype.kind != "f":
        raise InputError(f"{source}: images must be floating point, not {images.dtype}")
    if spatial_dims is not None and images.ndim != spatial_dims + 1:
        raise InputError(f"{source}: images have shape {tuple(images.shape)}, expected "
                         f"(N, ...) with {spatial_dims} spatial axes")
    if shape is not None and tuple(images.shape[1:]) != tuple(int(s) for s in shape):
        raise InputError(f"{source}: images are {tuple(images.shape[1:])} but the folder's JSON "
                         f"says {tuple(shape)}")


def check_manifest(records: Sequence[Any], n_images: int, source: str | Path,
                   splits: Sequence[str] | None = None) -> None:
    """Row indices are 0..N-1, each once; with `splits`, every row names one of them and no
    patient is on two splits (the patient, not the image, is the unit of membership)."""
    seen: set[int] = set()
    for row, r in enumerate(records, start=2):  # line 1 is the header
        if not 0 <= r.index < n_images:
            raise InputError(f"{source}: line {row}: index {r.index} is out of range (images.npy "
                             f"holds {n_images} images)")
        if r.index in seen:
            raise InputError(f"{source}: line {row}: index {r.index} appears twice")
        seen.add(r.index)
    if splits is None:
        return
    split_of: dict[str, str] = {}
    for row, r in enumerate(records, start=2):
        if r.split not in splits:
            raise InputError(f"{source}: line {row}: unknown split {r.split!r}; a manifest names one "
                             f"of {', '.join(splits)}")
        first = split_of.setdefault(r.patient, r.split)
        if first != r.split:
            # the pseudonym is a keyed hash, not an identifier, but it is not needed to act on this
            raise InputError(f"{source}: line {row}: a patient is on two splits ({first} and "
                             f"{r.split}); splits are by patient, re-ingest to split again")


def read_folder_json(path: Path, schema: str, required: Sequence[str] = ()) -> dict[str, Any]:
    """A folder's description JSON (dataset.json, cohort.json): an object of `schema` with the
    `required` keys, or one line saying what is wrong."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({str(err).splitlines()[0]})") from None
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if data.get("schema") != schema:
        raise InputError(f"{path}: schema is {data.get('schema')!r}, expected {schema!r}")
    missing = [k for k in required if k not in data]
    if missing:
        raise InputError(f"{path}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return data
