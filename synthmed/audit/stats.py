"""Statistics of a membership-inference audit: ROC AUC, TPR at low FPR, exact intervals, epsilon.

Conventions shared by every function here:

* a score is "member-likeness": higher means the attacker believes the record was in training;
* the unit is whatever the caller passes. The audit passes one score per PATIENT (an image-level
  attack is aggregated with `synthmed.audit.attacks.aggregate_by_patient` first), because the
  patient, not the image, is the unit of membership;
* the decision rule at threshold ``t`` is "member if score >= t".

Formulas (n1 members with scores x_i, n0 non-members with scores y_j):

* ROC AUC (Mann-Whitney U / (n1 n0)) and the Clopper-Pearson interval are defined, with their
  formulas, in `synthmed.stats` (shared with the evaluation) and re-exported here.
* Differential privacy bounds membership inference (Kairouz et al. 2015; Jagielski et al. 2020):
  an (eps, delta)-DP mechanism forces TPR <= e^eps FPR + delta and 1 - FPR <= e^eps (1 - TPR) + delta,
  so an attack observed at (TPR, FPR) shows eps >= max(log((TPR - delta) / FPR),
  log((1 - FPR - delta) / (1 - TPR))). Taking TPR at its lower and FPR at its upper confidence bound
  makes this a conservative (1 - alpha-ish) lower bound on the epsilon the data release leaks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as _st

from synthmed.stats import clopper_pearson, finite_scores, roc_auc

__all__ = ["roc_auc", "roc_curve", "auc_bootstrap_ci", "clopper_pearson",
           "min_nonmembers_for_fpr", "RateAtFpr", "tpr_at_fpr", "empirical_epsilon",
           "epsilon_from_rate", "finite_scores"]


# ----------------------------------------------------------------------------------------- AUC
# `roc_auc` (one implementation, shared with the evaluation) and its score check live in
# synthmed.stats; imported here so the audit's statistics stay in one namespace.
def roc_curve(member_scores: Any, nonmember_scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold, from (0, 0) (threshold +inf) to (1, 1).

    Point i uses the rule "member if score >= t_i" with t_i the i-th largest distinct score, so
    tied scores move together (the curve has a diagonal segment there) and the trapezoid area
    under the curve equals `roc_auc`.
    """
    x = finite_scores(member_scores, "member_scores")
    y = finite_scores(nonmember_scores, "nonmember_scores")
    thresholds = np.unique(np.concatenate([x, y]))[::-1]
    xs, ys = np.sort(x), np.sort(y)
    # number of scores >= t = n - (number < t)
    tp = x.size - np.searchsorted(xs, thresholds, side="left")
    fp = y.size - np.searchsorted(ys, thresholds, side="left")
    tpr = np.concatenate([[0.0], tp / x.size])
    fpr = np.concatenate([[0.0], fp / y.size])
    return fpr, tpr


def _auc_weighted(xs_sorted: np.ndarray, y_sorted: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> float:
    """AUC with integer multiplicities (a bootstrap resample) without materialising the resample.

    For each member value x: (weight of non-members < x) + 1/2 (weight of non-members == x).
    """
    cw = np.concatenate([[0.0], np.cumsum(wy)])
    lo = cw[np.searchsorted(y_sorted, xs_sorted, side="left")]
    hi = cw[np.searchsorted(y_sorted, xs_sorted, side="right")]
    return float(np.dot(wx, lo + 0.5 * (hi - lo)) / (wx.sum() * wy.sum()))


def auc_bootstrap_ci(member_scores: Any, nonmember_scores: Any, n_boot: int = 1000,
                     alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for the ROC AUC, at level 1 - alpha.

    Members and non-members are resampled SEPARATELY (each with replacement, at its own size):
    the two groups are fixed by the study design (who was trained on), so the resample keeps
    their sizes. A resample is drawn as multinomial counts over the original records, which is the
    same distribution as drawing indices, at a fraction of the cost. Seeded: same inputs and seed
    give the same interval.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    x = np.sort(finite_scores(member_scores, "member_scores"))
    y = np.sort(finite_scores(nonmember_scores, "nonmember_scores"))
    rng = np.random.default_rng(seed)
    px = np.full(x.size, 1.0 / x.size)
    py = np.full(y.size, 1.0 / y.size)
    aucs = np.empty(n_boot)
    for b in range(n_boot):
        wx = rng.multinomial(x.size, px).astype(np.float64)
        wy = rng.multinomial(y.size, py).astype(np.float64)
        aucs[b] = _auc_weighted(x, y, wx, wy)
    lo, hi = np.quantile(aucs, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


# ------------------------------------------------------------------------------- proportions
# `clopper_pearson` (one implementation, shared with the evaluation) lives in synthmed.stats.


def min_nonmembers_for_fpr(target_fpr: float, alpha: float = 0.05) -> int:
    """Smallest number of non-members with which a false-positive rate of `target_fpr` can be shown.

    Rule: even in the best case (no non-member above the threshold) the exact upper confidence bound
    on the FPR is 1 - (alpha/2)^(1/n). Unless that bound is <= target_fpr, no threshold can be
    shown to keep the FPR at the target and a "TPR at target FPR" is not a rate but a guess.
    Solving gives n >= log(alpha/2) / log(1 - target_fpr): about 3.7 / target_fpr at alpha = 0.05,
    i.e. 368 non-members for 1 % FPR and 3,688 for 0.1 %.
    """
    if not 0 < target_fpr < 1:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    return int(math.ceil(math.log(alpha / 2) / math.log1p(-target_fpr)))


@dataclass(frozen=True)
class RateAtFpr:
    """TPR of an attack at the threshold that keeps the observed FPR at or below a target."""

    target_fpr: float
    tpr: float
    tpr_ci: tuple[float, float]
    fpr_achieved: float
    fpr_ci: tuple[float, float]
    threshold: float
    n_members: int
    n_nonmembers: int
    estimable: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tpr_ci"] = list(self.tpr_ci)
        d["fpr_ci"] = list(self.fpr_ci)
        d["threshold"] = self.threshold if math.isfinite(self.threshold) else None
        return d


def tpr_at_fpr(member_scores: Any, nonmember_scores: Any, target_fpr: float,
               alpha: float = 0.05) -> RateAtFpr:
    """TPR at the lowest threshold whose observed FPR is <= target_fpr, with exact intervals.

    The threshold is the smallest observed score t such that at most floor(target_fpr * n0)
    non-members score >= t (so ties never push the FPR over the target); with no such score it is
    +inf (nobody is called a member, TPR = 0). TPR and FPR get Clopper-Pearson intervals.

    `estimable` is False when there are fewer non-members than `min_nonmembers_for_fpr` (the
    smallest non-zero FPR is 1/n0, and below that size even zero false positives cannot show that
    the FPR is at the target): the numbers are still returned, `note` says why not to read them
    as a rate.
    """
    x = finite_scores(member_scores, "member_scores")
    y = finite_scores(nonmember_scores, "nonmember_scores")
    n1, n0 = x.size, y.size
    allowed_fp = int(math.floor(target_fpr * n0 + 1e-9))
    thresholds = np.unique(np.concatenate([x, y]))  # ascending: the first that fits is the lowest
    ys = np.sort(y)
    fp = n0 - np.searchsorted(ys, thresholds, side="left")
    ok = np.nonzero(fp <= allowed_fp)[0]
    threshold = float(thresholds[ok[0]]) if ok.size else math.inf
    k_tp = int(np.count_nonzero(x >= threshold))
    k_fp = int(np.count_nonzero(y >= threshold))
    need = min_nonmembers_for_fpr(target_fpr, alpha)
    estimable = n0 >= need
    if estimable:
        note = (f"{k_fp} of {n0} non-members and {k_tp} of {n1} members score at or above the "
                f"threshold")
    else:
        note = (f"not estimable: {n0} non-members, but a rate of {target_fpr:g} FPR needs at "
                f"least {need} (with n non-members the smallest non-zero FPR is 1/n, and even zero "
                f"false positives only bound the FPR by 1-(alpha/2)^(1/n) = "
                f"{1 - (alpha / 2) ** (1 / n0):.3g})")
    return RateAtFpr(target_fpr=float(target_fpr), tpr=k_tp / n1, tpr_ci=clopper_pearson(k_tp, n1, alpha),
                     fpr_achieved=k_fp / n0, fpr_ci=clopper_pearson(k_fp, n0, alpha),
                     threshold=threshold, n_members=n1, n_nonmembers=n0,
                     estimable=estimable, note=note)


# ----------------------------------------------------------------------------------- epsilon
def empirical_epsilon(tpr: float, fpr: float, delta: float = 0.0) -> float:
    """Lower bound on the DP epsilon implied by an attack with this TPR and FPR.

    eps >= max(log((tpr - delta) / fpr), log((1 - fpr - delta) / (1 - tpr)), 0).
    Pass the LOWER confidence bound of the TPR and the UPPER bound of the FPR (see
    `epsilon_from_rate`) to get a conservative bound. Returns inf when a bound divides by zero with a
    positive numerator (e.g. fpr = 0 and tpr > delta): no finite epsilon explains the observation.
    """
    for name, v in (("tpr", tpr), ("fpr", fpr), ("delta", delta)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {v}")
    bounds = [0.0]
    for num, den in ((tpr - delta, fpr), (1.0 - fpr - delta, 1.0 - tpr)):
        if num <= 0:
            continue
        bounds.append(math.inf if den <= 0 else math.log(num / den))
    return float(max(bounds))


def epsilon_from_rate(rate: RateAtFpr, delta: float = 0.0) -> float:
    """Conservative epsilon lower bound from a `RateAtFpr`: TPR lower bound, FPR upper bound."""
    return empirical_epsilon(rate.tpr_ci[0], rate.fpr_ci[1], delta)
