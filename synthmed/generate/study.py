"""The typed pieces a generated cohort is made of, shared by the sampler and the writers.

`VirtualPatient` and `SyntheticStudy` are what `generate/` produces; `CohortContext` is what every
written file must record about how it was made (the writers in `generate/writers/` take all three
and return one `ManifestRow` per image). Nothing here is derived from a real patient: ids are
`SYN-…`, dates are offsets from a fixed synthetic epoch.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Every synthetic date is this epoch plus an offset in days: never today's date (the same spec
# gives the same bytes on any day) and never a date from the data. The epoch lies after any date
# a real header can hold (those are in the past), so no synthetic date can equal a source date:
# with an epoch inside the years of real acquisitions, a few hundred studies were enough for
# some to fall on a real study or birth date, and the release scan rightly refused them.
SYNTHETIC_EPOCH = _dt.date(2200, 1, 1)


@dataclass(frozen=True)
class VirtualPatient:
    """One virtual patient: an id, attributes drawn from the spec, and its own seed."""

    index: int                 # position in the cohort (0-based); the id is derived from it
    patient_id: str            # "SYN-000123"
    sex: str = ""              # "F" | "M" | "" (unknown / model has no sex conditioning)
    age: float | None = None   # age in years at the first study
    seed: int = 0              # from (cohort seed, patient index): the patient regenerates alone
    first_offset_days: int = 0  # first study's date = SYNTHETIC_EPOCH + this


@dataclass(frozen=True)
class SyntheticStudy:
    """One study of a virtual patient: the conditions it was sampled with and its image."""

    patient: VirtualPatient
    study_index: int           # 0 for the first study
    days_since_first: int      # 0 for the first study
    labels: tuple[str, ...]    # findings present in this study (conditioning)
    age: float | None          # age at this study (advances with days_since_first)
    image: np.ndarray          # float32 in [0, 1], (H, W) or (D, H, W)
    seed: int                  # seed of this study's sampling
    followup_strength: float | None = None  # SDEdit strength for follow-ups, None for the first

    @property
    def date(self) -> _dt.date:
        return SYNTHETIC_EPOCH + _dt.timedelta(days=self.patient.first_offset_days + self.days_since_first)


@dataclass(frozen=True)
class CohortContext:
    """What every output file records about how it was made (and what the writers need)."""

    cohort_seed: int
    model_hash: str
    synthmed_version: str
    spatial_dims: int
    modality: str                      # "DX" for 2D; "CT" or "MR" for 3D
    sampling: dict[str, Any]           # settings actually used: sampler, steps, guidance_scale, ...
    spacing: tuple[float, ...] = ()    # mm per pixel / voxel of the model's images, when known
    # Maps [0, 1] back to the modality's units (e.g. HU for CT): stored = lo + x * (hi - lo).
    intensity_window: tuple[float, float] | None = None
    label_vocabulary: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    # sha256 of the resolved cohort spec: mixed into every UID, so two cohorts made from the same
    # model and seed with different specs never share a UID.
    spec_sha256: str = ""
    # DICOM Body Part Examined of the training images ("CHEST", "KNEE", "BRAIN", ...), when known.
    body_part: str = ""
    # DICOM Patient Orientation of a 2D image's rows and columns: the training images' display
    # orientation. ("L", "F") is how frontal radiographs (PA / AP chest, AP knee) are shown.
    patient_orientation: tuple[str, str] = ("L", "F")


__all__ = ["SYNTHETIC_EPOCH", "VirtualPatient", "SyntheticStudy", "CohortContext"]
