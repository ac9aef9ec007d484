"""Condition fidelity: does each synthetic image show what its manifest says it should?

A classifier trained on real train images reads one attribute (a finding, the sex, the age group)
of every cohort image; `agreement` compares its reading with the manifest's value:

- agreement: share of images where the two match;
- chance: the agreement two independent labellings with the same class shares would reach,
  sum_c P(read = c) P(manifest = c) (Cohen 1960), so 0.9 on a finding present in 5 % of images
  reads as what it is; kappa = (agreement - chance) / (1 - chance);
- interval: 95 % percentile interval over a bootstrap of the cohort's *patients* (a virtual
  patient's studies come from one draw and go in or out together);
- real: the same classifier's agreement on real holdout images with their recorded values, its
  ceiling: a cohort cannot be read more faithfully than real images are.

Plain arrays in, a frozen dataclass out. Class keys are strings; images whose value is unknown
are left out by the caller.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from synthmed.evaluate.floor import patient_groups


@dataclass(frozen=True)
class Agreement:
    attribute: str
    agreement: float
    chance: float
    kappa: float
    low: float
    high: float
    n_images: int
    n_patients: int
    classes: tuple[str, ...]
    real: float | None = None       # on real holdout images: the classifier's ceiling
    auc: float | None = None        # binary attributes: the read probability against the manifest
    real_auc: float | None = None
    n_boot: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = list(self.classes)
        return d


def chance_agreement(read: np.ndarray, truth: np.ndarray, classes: Sequence[str]) -> float:
    return float(sum(np.mean(read == c) * np.mean(truth == c) for c in classes))


def agreement(attribute: str, read: Any, truth: Any, patients: Any = None, *,
              classes: Sequence[str] | None = None, n_boot: int = 200, seed: int = 0,
              real: float | None = None, auc: float | None = None,
              real_auc: float | None = None) -> Agreement:
    """Agreement of `read` (the classifier's class per image) with `truth` (the manifest's)."""
    r, t = np.asarray(read).astype(str), np.asarray(truth).astype(str)
    if r.shape != t.shape or r.ndim != 1 or r.size == 0:
        raise ValueError(f"{attribute}: give one read and one manifest value per image "
                         f"(got {r.shape} and {t.shape})")
    classes = tuple(classes) if classes is not None else tuple(sorted(set(r) | set(t)))
    groups = patient_groups(patients, r.size)
    value = float(np.mean(r == t))
    chance = chance_agreement(r, t, classes)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(int(n_boot)):
        rows = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
        reps.append(float(np.mean(r[rows] == t[rows])))
    low, high = (np.percentile(reps, [2.5, 97.5]).tolist() if reps else (math.nan, math.nan))
    kappa = (value - chance) / (1 - chance) if chance < 1 else math.nan
    return Agreement(attribute, value, chance, float(kappa), float(low), float(high), int(r.size),
                     len(groups), classes, real, auc, real_auc, int(n_boot))


def youden_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
    """The score threshold (read positive when score >= t) maximising sensitivity + specificity
    (Youden 1950) on labelled images; 0.5 when one class is missing."""
    s, y = np.asarray(scores, np.float64), np.asarray(positive, bool)
    if y.all() or not y.any():
        return 0.5
    cands = np.unique(s)
    best, best_t = -1.0, 0.5
    for t in cands:
        j = np.mean(s[y] >= t) + np.mean(s[~y] < t)
        if j > best:
            best, best_t = j, float(t)
    return best_t


__all__ = ["Agreement", "agreement", "chance_agreement", "youden_threshold"]
