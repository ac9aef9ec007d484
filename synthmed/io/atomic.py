"""Atomic writes: write to a temporary name in the same folder, then rename.

A crash or Ctrl-C mid-write leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()

@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes the file 0600; an output should get the permissions any new file would.
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any, *, nan_as_null: bool = False) -> str:
    """JSON with sorted keys, so the same content gives the same bytes.

    Strict JSON has no NaN or Infinity (Python would write them, and other readers then refuse
    the file), so a non-finite number is a ValueError naming its key, or, with `nan_as_null`, for
    records where NaN is a legitimate "could not be measured", it is written as null.
    """
    obj = _finite_or_null(obj, "", nan_as_null)
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n"


def write_json(path: str | Path, obj: Any, *, nan_as_null: bool = False) -> None:
    try:
        text = dumps_json(obj, nan_as_null=nan_as_null)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    write_text(path, text)


def _finite_or_null(obj: Any, key: str, nan_as_null: bool) -> Any:
    """`obj` with every non-finite float replaced by None (or a ValueError naming the first)."""
    if isinstance(obj, (float, np.floating)):
        if np.isfinite(obj):
            return obj
        if nan_as_null:
            return None
        raise ValueError(f"key '{key or '<top level>'}' is {float(obj)}; JSON has no NaN or "
                         "infinity")
    if isinstance(obj, dict):
        return {k: _finite_or_null(v, f"{key}.{k}" if key else str(k), nan_as_null)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v, f"{key}[{i}]", nan_as_null) for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        return _finite_or_null(obj.tolist(), key, nan_as_null)
    return obj


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
