"""Is an audit big enough to be evidence? Pure functions on the audit's own numbers.

A `pass` must mean "the audit would have seen a leak of the size this tier cares about". Each
profile states that size: `attacks.rule_out_auc`, the smallest attack AUC the tier must rule out
(0.6 for `public`). An attack's rule can then end three ways:

* the simultaneous interval lies wholly below the leak (upper bound < rule_out_auc): the leak is
  ruled out, this rule supports a pass;
* the interval shows a leak (the `fail` rules in verdict.py): fail;
* neither: the audit is too small to tell. The verdict is `inconclusive`, with the number of
  holdout patients that would settle it.

How many patients? From the half-width the audit observed, not from a formula for an assumed
score distribution. The upper half-width h = upper - estimate of a percentile-bootstrap AUC
interval scales as 1/sqrt(n) when the members and non-members grow in proportion (the AUC's
variance is a sum of terms in 1/n1 and 1/n0 (Hanley & McNeil 1982; DeLong et al. 1988), and the
bootstrap estimates that variance). We assume exactly that: the dataset is re-ingested at the
same split fractions, so train and holdout grow together and n stands for either. To bring the
upper bound below the leak L the half-width must drop under L - estimate:

    n_needed = smallest n with  n_now * (h / (L - estimate))^2 < n

(`scaled_size`). It assumes the estimate stays where it is; a larger audit moves it, so the
number is a planning figure, not a promise, and the report says so. When the estimate itself
is at or above L no sample size helps (that is a `fail` in verdict.py anyway).

A rate at a false-positive rate (TPR at 1 % FPR) cannot be measured at all below
`stats.min_nonmembers_for_fpr` non-members (the smallest non-zero FPR is 1/n0): such a rule is
"not estimable" and counts toward inconclusive, with that count as the patients needed.

Counts here are of EVALUATED non-member patients; `holdout_needed` converts them to holdout
patients when part of the holdout calibrates the attacks instead (no reference split).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Exclusion", "upper_half_width", "scaled_size", "auc_exclusion",
           "nonmembers_for_fpr", "holdout_needed"]


@dataclass(frozen=True)
class Exclusion:
    """Whether an interval rules out a leak, and what sample would when it does not."""

    estimate: float
    upper: float
    leak: float
    excluded: bool            # upper < leak
    half_width: float         # upper - estimate, as observed
    needed_half_width: float  # leak - estimate (<= 0: no sample size can exclude the leak)
    n_now: int                # evaluated non-member patients of this audit
    n_needed: int | None      # evaluated non-members with which the leak would be excluded;
                              # n_now when already excluded, None when no size can

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def upper_half_width(estimate: float, interval: tuple[float, float]) -> float:
    """The interval's reach above the estimate (a bootstrap interval need not be symmetric, and
    only its upper end decides whether a leak is ruled out)."""
    lo, hi = (float(v) for v in interval)
    if not (math.isfinite(estimate) and math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"interval {interval!r} around {estimate!r} is not a finite range")
    return max(0.0, hi - float(estimate))


def scaled_size(n_now: int, half_width: float, target_half_width: float) -> int:
    """Smallest n at which a half-width of `half_width` at `n_now` shrinks below
    `target_half_width`, with half-widths scaling as 1/sqrt(n): n_now * (h / t)^2 < n."""
    if n_now < 1:
        raise ValueError(f"n_now must be at least 1 (got {n_now})")
    if not target_half_width > 0:
        raise ValueError(f"target_half_width must be positive (got {target_half_width})")
    if half_width < target_half_width:
        return int(n_now)
    return int(math.floor(n_now * (half_width / target_half_width) ** 2)) + 1


def auc_exclusion(auc: float, interval: tuple[float, float], leak: float, n_nonmembers: int) -> Exclusion:
    """Does the (simultaneous) interval of an attack AUC exclude an AUC of `leak`?"""
    h = upper_half_width(auc, interval)
    hi = float(interval[1])
    target = float(leak) - float(auc)
    excluded = hi < leak
    if excluded:
        needed: int | None = int(n_nonmembers)
    elif target <= 0:
        needed = None
    else:
        needed = scaled_size(n_nonmembers, h, target)
    return Exclusion(estimate=float(auc), upper=hi, leak=float(leak), excluded=excluded,
                     half_width=h, needed_half_width=target, n_now=int(n_nonmembers),
                     n_needed=needed)


def nonmembers_for_fpr(target_fpr: float, alpha: float) -> int:
    """Non-members needed before a TPR at `target_fpr` is a rate (see stats.min_nonmembers_for_fpr)."""
    from synthmed.audit.stats import min_nonmembers_for_fpr

    return min_nonmembers_for_fpr(target_fpr, alpha)


def holdout_needed(nonmembers_needed: int, n_evaluated: int, n_holdout: int) -> int:
    """Holdout patients that give `nonmembers_needed` evaluated non-members, when `n_evaluated`
    of the `n_holdout` holdout patients are evaluated now (the others calibrate the attacks
    because the dataset has no reference split; the share is kept)."""
    if n_evaluated < 1 or n_holdout < n_evaluated:
        raise ValueError(f"{n_evaluated} evaluated of {n_holdout} holdout patients is not a share")
    return int(math.ceil(nonmembers_needed * n_holdout / n_evaluated - 1e-9))
