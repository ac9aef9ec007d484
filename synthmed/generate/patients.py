"""Virtual patients from a cohort spec: who they are and what each of their studies shows.

Patient i's seed comes from (cohort seed, i) alone, and everything about the patient (study
count, intervals, findings at each study, age, sex, the noise of every study) is drawn from
that seed, so any patient, or any shard, regenerates alone and byte for byte. Nothing here is
derived from a real patient: ids are `SYN-<index>`, dates are offsets from `SYNTHETIC_EPOCH`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from synthmed.generate.spec import CohortSpec
from synthmed.generate.study import VirtualPatient

# First studies fall within ten years of the synthetic epoch, so cohorts do not all start on
# one day; still an offset drawn from the seed, never a date from the data.
FIRST_STUDY_SPREAD_DAYS = 3653
DAYS_PER_YEAR = 365.25


def patient_id(index: int) -> str:
    return f"SYN-{index:06d}"


def patient_seed(cohort_seed: int, index: int) -> int:
    return int(np.random.default_rng([cohort_seed, 11, index]).integers(2**62))


def study_seed(seed: int, study_index: int) -> int:
    return int(np.random.default_rng([seed, 2, study_index]).integers(2**62))


@dataclass(frozen=True)
class StudyPlan:
    """One study to sample: its timing, its conditions and its noise seed."""

    study_index: int
    days_since_first: int
    labels: tuple[str, ...] | None   # None: labels left to the model (unconditional)
    age: float | None
    seed: int

    def conditions(self, sex: str) -> dict[str, Any]:
        c: dict[str, Any] = {}
        if self.labels is not None:
            c["labels"] = list(self.labels)
        if self.age is not None:
            c["age"] = self.age
        if sex:
            c["sex"] = sex
        return c


@dataclass(frozen=True)
class PatientPlan:
    patient: VirtualPatient
    studies: tuple[StudyPlan, ...]


def draw_patient(spec: CohortSpec, index: int, vocabulary: Sequence[str],
                 priors: dict[str, Any]) -> PatientPlan:
    """Patient `index` of the cohort `spec` describes (spec already checked against the model)."""
    seed = patient_seed(spec.seed, index)
    rng = np.random.default_rng([seed, 1])
    dist = spec.studies.distribution()
    counts = list(dist)
    n_studies = int(counts[rng.choice(len(counts), p=_normalised(dist.values()))]) if len(counts) > 1 else counts[0]
    lo, hi = spec.studies.interval_range()
    gaps = rng.integers(lo, hi + 1, size=max(0, n_studies - 1))
    days = [0, *np.cumsum(gaps).astype(int).tolist()]
    first_offset = int(rng.integers(0, FIRST_STUDY_SPREAD_DAYS))
    labels = _first_labels(spec, vocabulary, priors, rng)
    age = _age(spec, priors, rng)
    sex = _sex(spec, priors, rng)
    studies = []
    current = labels
    for s in range(n_studies):
        if s > 0 and current is not None:
            draws = rng.random(len(vocabulary))
            nxt = []
            for j, name in enumerate(vocabulary):
                present = name in current
                if present:
                    keep = draws[j] >= spec.labels.change("resolve", name)
                else:
                    keep = draws[j] < spec.labels.change("appear", name)
                if keep:
                    nxt.append(name)
            current = tuple(nxt)
        study_age = None if age is None else round(age + days[s] / DAYS_PER_YEAR, 1)
        studies.append(StudyPlan(s, int(days[s]), current, study_age, study_seed(seed, s)))
    patient = VirtualPatient(index=index, patient_id=patient_id(index), sex=sex, age=age,
                             seed=seed, first_offset_days=first_offset)
    return PatientPlan(patient, tuple(studies))


def _normalised(values) -> np.ndarray:
    p = np.asarray(list(values), dtype=float)
    return p / p.sum()


def _first_labels(spec: CohortSpec, vocabulary: Sequence[str], priors: dict[str, Any],
                  rng: np.random.Generator) -> tuple[str, ...] | None:
    draws = rng.random(len(vocabulary))
    pick = rng.random()
    if spec.labels.joint is not None:
        cells = spec.labels.joint
        cum = np.cumsum(_normalised(c.p for c in cells))
        cell = cells[min(int(np.searchsorted(cum, pick, side="right")), len(cells) - 1)]
        return tuple(name for name in vocabulary if name in cell.labels)
    if spec.labels.prevalence is not None:
        rates = spec.labels.prevalence  # labels not named get rate 0: the user described the cohort
    elif spec.match == "training" and priors.get("label_rates") is not None:
        rates = priors["label_rates"]
    else:
        return None
    return tuple(name for j, name in enumerate(vocabulary) if draws[j] < float(rates.get(name, 0.0)))


def _age(spec: CohortSpec, priors: dict[str, Any], rng: np.random.Generator) -> float | None:
    u, z = rng.random(), rng.standard_normal()
    if spec.age is not None:
        a = spec.age
        if a.mean is None:
            return round(a.min + (a.max - a.min) * u, 1)
        return round(min(max(a.mean + a.sd * z, a.min), a.max), 1)
    prior = priors.get("age")
    if spec.match == "training" and prior:
        return round(min(max(prior["mean"] + prior["std"] * z, prior["q05"]), prior["q95"]), 1)
    return None


def _sex(spec: CohortSpec, priors: dict[str, Any], rng: np.random.Generator) -> str:
    u = rng.random()
    female = spec.sex_ratio
    if female is None and spec.match == "training":
        female = priors.get("female_share")
    if female is None:
        return ""
    return "F" if u < float(female) else "M"


def draw_conditions(n: int, vocabulary: list[str], priors: dict[str, Any], *,
                    label_rates: dict[str, float] | None = None,
                    age_range: tuple[float, float] | None = None,
                    sex_ratio: float | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """First-study conditions of `n` one-study patients, as `synthmed sample` draws them: unset
    targets fall back to the training population (`match: training`)."""
    spec = quick_spec(n, label_rates=label_rates, age_range=age_range, sex_ratio=sex_ratio, seed=seed)
    spec.check_against(vocabulary)
    out = []
    for i in range(n):
        plan = draw_patient(spec, i, vocabulary, priors)
        c = plan.studies[0].conditions(plan.patient.sex)
        c.setdefault("labels", [])
        out.append(c)
    return out


def quick_spec(n: int, *, label_rates: dict[str, float] | None = None,
               age_range: tuple[float, float] | None = None, sex_ratio: float | None = None,
               seed: int = 0, sampler: str | None = None, steps: int | None = None,
               guidance_scale: float | None = None, batch_patients: int = 1,
               formats: Sequence[str] = ()) -> CohortSpec:
    """The spec `synthmed sample`'s options stand for: one study per patient, `match: training`."""
    from synthmed.config import validate_config
    from synthmed.errors import InputError

    if n < 1:
        raise InputError(f"n must be at least 1 (got {n})")
    if label_rates is not None:
        bad = {k: v for k, v in label_rates.items() if not 0.0 <= float(v) <= 1.0}
        if bad:
            raise InputError(f"label_rates: rates must be between 0 and 1 (got {bad})")
    if age_range is not None:
        lo, hi = float(age_range[0]), float(age_range[1])
        if not (0 <= lo <= hi <= 130):
            raise InputError(f"age_range: {age_range} is not a range of ages in years (0-130)")
    if sex_ratio is not None and not 0.0 <= float(sex_ratio) <= 1.0:
        raise InputError(f"sex_ratio: {sex_ratio} must be the share of females, between 0 and 1")
    data: dict[str, Any] = {"patients": n, "seed": seed, "match": "training",
                            "batch_patients": batch_patients, "formats": list(formats),
                            "sampling": {"sampler": sampler, "steps": steps,
                                         "guidance_scale": guidance_scale}}
    if label_rates is not None:
        data["labels"] = {"prevalence": {k: float(v) for k, v in label_rates.items()}}
    if age_range is not None:
        data["age"] = {"min": float(age_range[0]), "max": float(age_range[1])}
    if sex_ratio is not None:
        data["sex_ratio"] = float(sex_ratio)
    return validate_config(data, CohortSpec, "sample options")


__all__ = ["StudyPlan", "PatientPlan", "draw_patient", "draw_conditions", "quick_spec",
           "patient_id", "patient_seed", "study_seed"]
