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


def build_checks(config: IngestConfig) -> list[ImageCheck]:
    """The checks an ingest with `config` runs, in order."""
    checks: list[ImageCheck] = []
    return checks


__all__ = ["CheckResult", "ImageCheck", "build_checks", "run_checks"]
