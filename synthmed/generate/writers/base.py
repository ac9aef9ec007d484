"""The writer interface: one object per output format, found by name in a registry.

A writer turns one `SyntheticStudy` into files under `root/<format>/<patient_id>/` and returns the
path it wrote (relative to `root`). Everything a writer needs that is shared between formats (the
stored integers, the UIDs, the geometry) is computed once per study in `StudyOutput`, so the
formats cannot disagree about a study.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from synthmed.errors import InputError
from synthmed.generate.study import CohortContext, SyntheticStudy
from synthmed.generate.uids import StudyUids, study_uids
from synthmed.generate.writers.encoding import Encoded, encode

NOMINAL_SPACING_MM = 1.0  # used when the model's spacing is unknown (the data card says so)


@dataclass(frozen=True)
class Geometry:
    """Where the image's voxels are, in DICOM patient coordinates (LPS, mm).

    Axial, rows along +x, columns along +y, slices along +z: voxel (k, j, i) of a (D, H, W)
    volume sits at origin + i*dx*x + j*dy*y + k*dz*z. The volume is centred on (0, 0, 0).
    """

    spacing: tuple[float, ...]   # (dz, dy, dx) for 3D, (dy, dx) for 2D
    origin: tuple[float, float, float]
    spacing_known: bool

    @classmethod
    def for_image(cls, shape: tuple[int, ...], spacing: tuple[float, ...]) -> "Geometry":
        known = len(spacing) == len(shape) and all(float(s) > 0 for s in spacing)
        sp = tuple(float(s) for s in spacing) if known else (NOMINAL_SPACING_MM,) * len(shape)
        if len(shape) == 3:
            dz, dy, dx = sp
            d, h, w = shape
            origin = (-(w - 1) * dx / 2, -(h - 1) * dy / 2, -(d - 1) * dz / 2)
        else:
            dy, dx = sp
            h, w = shape
            origin = (-(w - 1) * dx / 2, -(h - 1) * dy / 2, 0.0)
        return cls(sp, origin, known)

    def slice_position(self, k: int) -> tuple[float, float, float]:
        x0, y0, z0 = self.origin
        dz = self.spacing[0] if len(self.spacing) == 3 else 0.0
        return (x0, y0, z0 + k * dz)

    def ras_affine(self) -> np.ndarray:
        """NIfTI affine (RAS) of the (x, y, z) = (W, H, D) voxel grid: LPS with x and y negated."""
        dz = self.spacing[0] if len(self.spacing) == 3 else NOMINAL_SPACING_MM
        dy, dx = self.spacing[-2:]
        x0, y0, z0 = self.origin
        return np.array([[-dx, 0, 0, -x0], [0, -dy, 0, -y0], [0, 0, dz, z0], [0, 0, 0, 1]],
                        dtype=np.float64)


@dataclass(frozen=True)
class StudyOutput:
    """What every format of one study shares."""

    study: SyntheticStudy
    ctx: CohortContext
    uids: StudyUids
    encoded: Encoded
    geometry: Geometry

    @classmethod
    def build(cls, study: SyntheticStudy, ctx: CohortContext) -> "StudyOutput":
        image = np.asarray(study.image)
        if image.ndim != ctx.spatial_dims or image.ndim not in (2, 3):
            raise InputError(f"{study.patient.patient_id} study {study.study_index}: image of shape "
                             f"{image.shape} for a {ctx.spatial_dims}D cohort")
        uids = study_uids(ctx.model_hash, ctx.spec_sha256, ctx.cohort_seed,
                          study.patient.patient_id, study.study_index)
        return cls(study, ctx, uids, encode(image, ctx.modality, ctx.intensity_window),
                   Geometry.for_image(image.shape, tuple(ctx.spacing)))

    @property
    def folder(self) -> str:
        """`<patient_id>/study-NN`: the study's place under each format's folder."""
        return f"{self.study.patient.patient_id}/study-{self.study.study_index:02d}"

    @property
    def instances(self) -> int:
        return self.encoded.stored.shape[0] if self.encoded.stored.ndim == 3 else 1


class Writer:
    """One output format. Subclasses set `name` and implement `write`."""

    name: ClassVar[str] = ""

    def check(self, out: StudyOutput) -> None:
        """Raise InputError when this format cannot hold `out` (called for every requested
        format before any file is written)."""

    def write(self, out: StudyOutput, root: Path) -> str:
        """Write the study's files under `root / self.name`; return the path (relative to `root`,
        POSIX) a reader opens: a file, or the folder of a multi-file series."""
        raise NotImplementedError


WRITERS: dict[str, type[Writer]] = {}


def register_writer(cls: type[Writer]) -> type[Writer]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no format name")
    WRITERS[cls.name] = cls
    return cls


def get_writer(name: str) -> Writer:
    try:
        return WRITERS[name]()
    except KeyError:
        raise InputError(f"unknown output format '{name}'; known: {', '.join(sorted(WRITERS))}") from None
