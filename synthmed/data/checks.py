"""Checks every loaded image passes through before normalisation, whatever its reader.

Ingestion runs `build_checks(config)` once per run and hands each `LoadedImage` (a 2D image or a
whole 3D volume) to every check in order. A check keeps the image, refuses it with a short
reason, or replaces it (for example with text masked out); a refusal is reported like any other
refused input: one line, the file's keyed reference and the reason. Reasons must never quote a
value taken from the input (pixel text, header values, names).

To add a check: subclass `ImageCheck`, give it a `name`, implement `check`, and append an
instance in `build_checks` (configured from the `IngestConfig`). Checks run in the worker
processes (forked: they inherit what `build_checks` created), so a check that holds a heavy
resource should create it lazily, on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from synthmed.data.ingest_config import IngestConfig
from synthmed.io.types import LoadedImage


@dataclass(frozen=True)
class CheckResult:
    """Kept (`image` is the input), replaced (`image` is a new one) or refused (`reason`)."""

    image: LoadedImage | None
    reason: str | None = None

    @property
    def refused(self) -> bool:
        return self.image is None

    @classmethod
    def keep(cls, image: LoadedImage) -> "CheckResult":
        return cls(image)

    @classmethod
    def replace(cls, image: LoadedImage) -> "CheckResult":
        return cls(image)

    @classmethod
    def refuse(cls, reason: str) -> "CheckResult":
        if not reason:
            raise ValueError("a refusal needs a reason")
        return cls(None, reason)


class ImageCheck:
    """One check on one loaded image; `name` appears in the report's list of checks run."""

    name: ClassVar[str] = ""

    def check(self, image: LoadedImage) -> CheckResult:
        raise NotImplementedError


def run_checks(image: LoadedImage, checks: list[ImageCheck]) -> CheckResult:
    """Every check in order; the first refusal stops, a replaced image goes on to the next."""
    for chk in checks:
        result = chk.check(image)
        if result.refused:
            return result
        image = result.image
    return CheckResult.keep(image)


class DegenerateImageCheck(ImageCheck):
    """Refuses images that hold no picture: a few pixels, a sliver, or one value everywhere.

    Such files (1x1 placeholders, 1x5000 strips, blank exports) pass every reader and would be
    learnt as blank training images. For a volume the in-plane size is judged (a few slices are
    a legitimate volume) and the whole volume must be constant to be refused. The limits are
    far from any real radiograph or slice: the smallest side of shared MedMNIST-style images is
    28 px, and stitched long-leg radiographs reach about 1:4.
    """

    name = "degenerate"
    MIN_SIDE = 8
    MAX_ASPECT = 20.0

    def check(self, image: LoadedImage) -> CheckResult:
        arr = image.array
        if arr.ndim < 2:
            return CheckResult.refuse(f"degenerate image: {arr.ndim} dimension(s)")
        h, w = arr.shape[-2:]
        if min(h, w) < self.MIN_SIDE:
            return CheckResult.refuse(f"degenerate image: {h}x{w} pixels (each side needs at "
                                      f"least {self.MIN_SIDE})")
        if max(h, w) / min(h, w) > self.MAX_ASPECT:
            return CheckResult.refuse(f"degenerate image: {h}x{w} pixels, an aspect ratio beyond "
                                      f"{self.MAX_ASPECT:g}:1")
        # A few pixels that differ from the first settle it for almost every real image; only
        # then the whole array (min/max, not nanmin/nanmax: with a NaN both are NaN, the test
        # is False, and normalisation refuses the image for its NaN instead).
        flat = arr.reshape(-1)
        first = flat[0]
        probe = flat[:: max(1, flat.size // 4096)]
        if np.all(probe == first) and float(arr.min()) == float(arr.max()):
            return CheckResult.refuse("degenerate image: every pixel has the same value (blank)")
        return CheckResult.keep(image)


def build_checks(config: IngestConfig) -> list[ImageCheck]:
    """The checks an ingest with `config` runs, in order."""
    checks: list[ImageCheck] = [DegenerateImageCheck()]
    return checks


__all__ = ["CheckResult", "DegenerateImageCheck", "ImageCheck", "build_checks", "run_checks"]
