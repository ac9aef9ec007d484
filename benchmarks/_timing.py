"""Timing pieces shared by the benchmark scripts (imported from the scripts' own folder)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls of `fn`, in seconds."""
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def full_read(path: Path) -> None:
    """Read every image of an images.npy once, in blocks: the baseline cost of touching the data."""
    a = np.load(path, mmap_mode="r")
    for i in range(0, a.shape[0], 1024):
        np.asarray(a[i:i + 1024], dtype=np.float32).copy()
