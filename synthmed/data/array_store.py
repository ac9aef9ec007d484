"""An `.npy` file written one image at a time, read back as a memory map.

Ingestion does not know how many images it will keep until it has read them all, and a dataset
may be larger than memory, so `np.save` of one big array does not fit. numpy has no appendable
`.npy` writer; this one reserves a fixed-size header, streams rows after it, and rewrites the
header with the final row count on close. The result is a plain `.npy` that
`np.load(..., mmap_mode="r")` opens without unpickling.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from synthmed.errors import InputError

_HEADER_BYTES = 256  # magic + version + length + dict, space padded; fits any realistic shape


class NpyAppender:
    """Append equally shaped rows to `path` (written to a temporary name, renamed on close)."""

    def __init__(self, path: str | Path, row_shape: tuple[int, ...], dtype: str = "float32"):
        self.path = Path(path)
        self.row_shape = tuple(int(s) for s in row_shape)
        self.dtype = np.dtype(dtype)
        self.count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self._fh = open(self._tmp, "wb")
        self._fh.write(self._header(0))

    def _header(self, n: int) -> bytes:
        d = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
             "shape": (n, *self.row_shape)}
        body = repr(d).encode("latin1")
        prefix = b"\x93NUMPY\x01\x00"
        pad = _HEADER_BYTES - len(prefix) - 2 - len(body) - 1
        if pad < 0:
            raise ValueError(f"shape {d['shape']} too long for the reserved .npy header")
        header_len = _HEADER_BYTES - len(prefix) - 2
        return prefix + header_len.to_bytes(2, "little") + body + b" " * pad + b"\n"

    def append(self, row: np.ndarray) -> int:
        """Write one row; returns its index."""
        row = np.asarray(row, dtype=self.dtype)
        if row.shape != self.row_shape:
            raise ValueError(f"row of shape {row.shape} does not match {self.row_shape}")
        self._fh.write(np.ascontiguousarray(row).tobytes())
        self.count += 1
        return self.count - 1

    def close(self) -> Path:
        self._fh.seek(0)
        self._fh.write(self._header(self.count))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "NpyAppender":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def open_array(path: str | Path) -> np.ndarray:
    """Memory-map an `.npy` written by synthmed (no pickles allowed)."""
    return np.load(path, mmap_mode="r", allow_pickle=False)


def read_images(path: str | Path) -> np.ndarray:
    """`open_array` for an input folder: a truncated or corrupt file is one line naming it."""
    try:
        return open_array(path)
    except (ValueError, OSError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: not a readable .npy array, truncated or corrupt ({reason})") from None
