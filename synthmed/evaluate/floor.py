"""The real-versus-real floor of a metric, with its spread over patients: what "good" reads as.

Every fidelity / diversity number is biased by finite samples (two draws of one distribution have
a Fréchet distance > 0, a precision < 1), so a synthetic set's value means something only beside
the same metric between two real sets of the same sizes: the train split (reference) against the
holdout (candidate). `real_floor` computes that value and resamples the holdout *patients* (the
unit of splitting: one patient's images go in or out together) to give its spread.

Two resampling schemes, because duplicates mean different things to different metrics:

- `replace=True` (the bootstrap, Efron 1979), for moment metrics such as the Fréchet distance: a
  patient drawn twice counts twice, and the replicate has the holdout's size;
- `replace=False` with `fraction < 1` (patient subsampling, Politis & Romano 1994), for k-NN and
  pair metrics (PRDC, MS-SSIM diversity): a duplicated image sits at distance 0 from its copy,
  which would shrink every k-NN radius and add identical pairs, so each patient enters once. The
  replicates are then smaller than the holdout, and `Floor.size` says how large: compare a
  synthetic set of that size with the interval (`synthetic_metric(reference, synth[:floor.size])`).

The interval is the normal bootstrap interval value +- 1.96 sd for the bootstrap (the percentile
interval of a size-biased metric is shifted off the value), and mean +- 1.96 sd / sqrt(1 - f)
over the subsamples (all at the size to compare at; sqrt(1 - f) undoes the finite-population
correction, since a fresh real set varies more than a fraction f of one fixed holdout).

Plain numpy in; the metric is any callable (reference, candidate) -> float, dict of floats or a
dataclass of them (`PRDC`, `Diversity`), and the result holds one `Interval` per number.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Interval:
    value: float      # the metric between the full reference and the full candidate
    mean: float       # over replicates
    std: float
    low: float        # the 95 % interval's ends (see `real_floor` for which interval)
    high: float

    def contains(self, x: float, slack: float = 0.0) -> bool:
        """Whether x lies in [low - slack, high + slack]."""
        return self.low - slack <= x <= self.high + slack


@dataclass(frozen=True)
class Floor:
    metrics: dict[str, Interval]
    n_boot: int
    replace: bool
    fraction: float
    size: int               # candidate rows per replicate (median over replicates)
    n_reference: int
    n_candidate: int
    n_patients: int
    seed: int

    def __getitem__(self, name: str) -> Interval:
        return self.metrics[name]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def as_numbers(result: Any) -> dict[str, float]:
    """A metric's result as {name: float}: a float becomes {"value": x}; from a dict or a dataclass
    the float-valued fields are kept (counts and settings are not resampled quantities)."""
    if isinstance(result, (float, np.floating)):
        return {"value": float(result)}
    if dataclasses.is_dataclass(result):
        result = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    if isinstance(result, dict):
        return {k: float(v) for k, v in result.items()
                if isinstance(v, (float, np.floating)) and not isinstance(v, bool)}
    raise TypeError(f"a metric must return a float, a dict or a dataclass, got {type(result).__name__}")


def patient_groups(patients: Any, n: int) -> list[np.ndarray]:
    """Row indices of each patient, patients in order of first appearance. None: one row, one patient."""
    if patients is None:
        return [np.array([i]) for i in range(n)]
    p = np.asarray(patients)
    if p.shape != (n,):
        raise ValueError(f"give one patient key per candidate row: {p.shape} keys for {n} rows")
    _, first, inverse = np.unique(p, return_index=True, return_inverse=True)
    order = np.argsort(first)
    return [np.flatnonzero(inverse == g) for g in order]


def real_floor(metric: Callable[[np.ndarray, np.ndarray], Any], reference: np.ndarray,
               candidate: np.ndarray, patients: Any = None, *, n_boot: int = 20, seed: int = 0,
               replace: bool = True, fraction: float = 1.0) -> Floor:
    """`metric(reference, candidate)` and its spread over resampled candidate patients.

    reference: real train rows (images or features); candidate: real holdout rows; patients: one
    key per candidate row (None: each row its own patient). See the module doc for `replace` /
    `fraction`. Deterministic for a given seed.
    """
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, got {n_boot}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not replace and fraction == 1:
        raise ValueError("without replacement every replicate would be the whole holdout: "
                         "give fraction < 1")
    groups = patient_groups(patients, candidate.shape[0])
    n_draw = max(2, int(round(fraction * len(groups))))
    if not replace and n_draw >= len(groups):
        raise ValueError(f"{len(groups)} patients are too few to subsample a fraction {fraction}")
    full = as_numbers(metric(reference, candidate))
    rng = np.random.default_rng(seed)
    reps: dict[str, list[float]] = {k: [] for k in full}
    sizes = []
    for _ in range(n_boot):
        pick = rng.choice(len(groups), size=n_draw, replace=replace)
        rows = np.concatenate([groups[g] for g in pick])
        sizes.append(rows.size)
        for k, v in as_numbers(metric(reference, candidate[rows])).items():
            reps[k].append(v)
    metrics = {}
    for k, v in full.items():
        a = np.asarray(reps[k])
        sd = float(a.std(ddof=1))
        if replace:
            # normal bootstrap interval around the full-set value: a patient drawn twice lowers a
            # replicate's effective size, which shifts size-biased metrics (the Fréchet distance
            # grows as n falls), so the percentile interval would sit above the value itself
            low, high = v - 1.96 * sd, v + 1.96 * sd
        else:
            # subsamples all have `size` rows, so they are centred where a fresh real set of that
            # size would be; but drawing a fraction f of a finite holdout without replacement
            # varies less than a fresh draw, by the finite-population factor (1 - f): widen by it
            half = 1.96 * sd / np.sqrt(1.0 - fraction)
            low, high = float(a.mean()) - half, float(a.mean()) + half
        metrics[k] = Interval(value=v, mean=float(a.mean()), std=sd, low=low, high=high)
    return Floor(metrics=metrics, n_boot=int(n_boot), replace=bool(replace), fraction=float(fraction),
                 size=int(np.median(sizes)), n_reference=int(reference.shape[0]),
                 n_candidate=int(candidate.shape[0]), n_patients=len(groups), seed=int(seed))
