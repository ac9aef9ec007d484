"""A cohort spec: what `synthmed generate` makes, as validated YAML (`configs/cohort-*.yaml`).

Every field has one meaning and is checked here, at the edge, before any sampling: a spec that
names a label the model does not know, asks for probabilities that do not add up, or an age
range outside 0-130 is refused with one line naming the key. `match: training` fills whatever
the spec leaves unset (labels, age, sex) from the training population the model card records;
without it an unset attribute is left to the model (its condition is null, i.e. unconditional).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from synthmed.config import StrictConfig, load_config
from synthmed.errors import InputError

class Interval(StrictConfig):
    """Days between consecutive studies: uniform whole days in [min, max]."""

    min: int = Field(ge=1)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "Interval":
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class StudiesSpec(StrictConfig):
    """Studies per patient: a fixed count, or {count: probability}; and the interval between them."""

    per_patient: Union[int, dict[int, float]] = 1
    interval_days: Union[int, Interval] = 180

    @field_validator("per_patient")
    @classmethod
    def _counts(cls, v):
        if isinstance(v, int):
            if v < 1:
                raise ValueError("must be at least 1")
            return v
        if not v:
            raise ValueError("the distribution is empty")
        if any(k < 1 for k in v):
            raise ValueError("every study count must be at least 1")
        _check_distribution(v.values())
        return dict(sorted(v.items()))

    @field_validator("interval_days")
    @classmethod
    def _interval(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("must be at least 1 day")
        return v

    def distribution(self) -> dict[int, float]:
        return {self.per_patient: 1.0} if isinstance(self.per_patient, int) else dict(self.per_patient)

    def interval_range(self) -> tuple[int, int]:
        iv = self.interval_days
        return (iv, iv) if isinstance(iv, int) else (iv.min, iv.max)


class JointCell(StrictConfig):
    """One cell of a joint label table: this exact set of findings, with this probability."""

    labels: tuple[str, ...] = ()
    p: float = Field(ge=0.0, le=1.0)


class LabelsSpec(StrictConfig):
    """Findings at the first study, and how they change at each follow-up.

    `prevalence`: marginal rates, drawn independently (labels not named: rate 0);
    `joint`: a table of label sets and probabilities (summing to 1); one of the two, or neither
    (then `match: training` or the model decides). `appear` / `resolve`: the chance, at each
    follow-up, that an absent finding appears / a present one resolves (one number for all
    labels, or per label)."""

    prevalence: Optional[dict[str, float]] = None
    joint: Optional[list[JointCell]] = None
    appear: Union[float, dict[str, float]] = 0.0
    resolve: Union[float, dict[str, float]] = 0.0

    @field_validator("prevalence", "appear", "resolve")
    @classmethod
    def _rates(cls, v):
        values = [v] if isinstance(v, (int, float)) else list((v or {}).values())
        bad = [x for x in values if not (isinstance(x, (int, float)) and 0.0 <= x <= 1.0)]
        if bad:
            raise ValueError(f"rates must be between 0 and 1 (got {bad[0]!r})")
        return v

    @model_validator(mode="after")
    def _one_of(self) -> "LabelsSpec":
        if self.prevalence is not None and self.joint is not None:
            raise ValueError("give prevalence (marginal) or joint (a table), not both")
        if self.joint is not None:
            if not self.joint:
                raise ValueError("joint: the table is empty")
            _check_distribution([c.p for c in self.joint], "joint")
            sets = [tuple(sorted(c.labels)) for c in self.joint]
            if len(set(sets)) != len(sets):
                raise ValueError("joint: a label set appears twice")
        return self

    def named(self) -> set[str]:
        names = set(self.prevalence or {})
        for c in self.joint or []:
            names |= set(c.labels)
        for v in (self.appear, self.resolve):
            if isinstance(v, dict):
                names |= set(v)
        return names

    def change(self, which: str, label: str) -> float:
        v = self.appear if which == "appear" else self.resolve
        return float(v.get(label, 0.0)) if isinstance(v, dict) else float(v)


class AgeSpec(StrictConfig):
    """Age at the first study: uniform in [min, max], or normal(mean, sd) clipped to [min, max]."""

    min: float = Field(ge=0.0, le=130.0)
    max: float = Field(ge=0.0, le=130.0)
    mean: Optional[float] = None
    sd: Optional[float] = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _check(self) -> "AgeSpec":
        if self.max < self.min:
            raise ValueError(f"max ({self.max:g}) is below min ({self.min:g})")
        if (self.mean is None) != (self.sd is None):
            raise ValueError("give both mean and sd (normal, clipped to min-max), or neither (uniform)")
        if self.mean is not None and not self.min <= self.mean <= self.max:
            raise ValueError(f"mean ({self.mean:g}) is outside [min, max]")
        return self


class SamplingSpec(StrictConfig):
    """Sampler settings; unset means the model's own (the cohort records what ran)."""

    sampler: Optional[str] = None
    steps: Optional[int] = Field(default=None, ge=1)
    guidance_scale: Optional[float] = Field(default=None, ge=0.0)

    @field_validator("sampler")
    @classmethod
    def _known(cls, v):
        from synthmed.models.schedulers import SAMPLERS

        if v is not None and v not in SAMPLERS:
            raise ValueError(f"unknown sampler {v!r}; choose one of {', '.join(SAMPLERS)}")
        return v


class FollowupSpec(StrictConfig):
    """Follow-ups are the first study partly re-noised and denoised with the follow-up's
    conditions (SDEdit): `strength` 0 would copy it, 1 would draw a new patient. The re-noising
    is the first study's own noise at that level (what its sampling passed through), blended
    with a fresh draw whose share of the variance is `fresh_noise`: what differs between the
    studies is then what their conditions change plus that share of visit-to-visit variation,
    where an all-fresh draw (1, classic SDEdit) redraws part of the patient's anatomy. (The
    ancestral `ddpm` sampler draws fresh noise at every later step as well, so with it a
    follow-up keeps less of its first study whatever this share.)"""

    strength: float = Field(default=0.35, gt=0.0, le=1.0)
    fresh_noise: float = Field(default=0.1, ge=0.0, le=1.0)


class CohortSpec(StrictConfig):
    """A cohort of virtual patients, as `synthmed generate --spec` reads it."""

    patients: int = Field(ge=1)
    studies: StudiesSpec = StudiesSpec()
    labels: LabelsSpec = LabelsSpec()
    age: Optional[AgeSpec] = None
    sex_ratio: Optional[float] = Field(default=None, ge=0.0, le=1.0)  # share of females
    match: Optional[Literal["training"]] = None
    formats: list[str] = []          # names in synthmed.generate.writers.WRITERS
    seed: int = Field(default=0, ge=0)
    sampling: SamplingSpec = SamplingSpec()
    followup: FollowupSpec = FollowupSpec()
    # Patients sampled together in one batch. Batch composition changes the last bits of a
    # float result, so this is part of what the bytes depend on: a group of `batch_patients`
    # consecutive patients (1: each patient alone) is the unit that regenerates byte for byte,
    # and shards are cut along groups.
    batch_patients: int = Field(default=1, ge=1)

    @field_validator("formats")
    @classmethod
    def _known(cls, v):
        from synthmed.generate.writers import WRITERS  # the registry, not a list kept here

        unknown = [f for f in v if f not in WRITERS]
        if unknown:
            raise ValueError(f"unknown format {unknown[0]!r}; known: {', '.join(sorted(WRITERS))}")
        if len(set(v)) != len(v):
            raise ValueError("a format is listed twice")
        return v

    def check_against(self, vocabulary: list[str]) -> None:
        """Refuse labels the model does not know (at the edge, before any sampling)."""
        unknown = sorted(self.labels.named() - set(vocabulary))
        if unknown:
            raise InputError(f"cohort spec: unknown label(s) {unknown}; the model knows "
                             f"{', '.join(vocabulary) or 'no labels'}")


def _check_distribution(values, what: str = "probabilities") -> None:
    values = [float(v) for v in values]
    if any(not (0.0 <= v <= 1.0) for v in values):
        raise ValueError(f"{what}: each probability must be between 0 and 1")
    if not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise ValueError(f"{what}: the probabilities add up to {sum(values):g}, not 1")


def load_spec(path: str | Path | None, overrides: dict | None = None) -> CohortSpec:
    """Read a spec file (a path or a shipped name like `cohort-followup`)."""
    from synthmed.config import resolve_config_path

    return load_config(resolve_config_path(path, "cohort"), CohortSpec, overrides)


__all__ = ["CohortSpec", "StudiesSpec", "LabelsSpec", "JointCell", "AgeSpec", "SamplingSpec",
           "FollowupSpec", "Interval", "load_spec"]
