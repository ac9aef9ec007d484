"""Statistics shared by the evaluation and the privacy audit (one implementation of each).

* ROC AUC = P(positive score > negative score) + 1/2 P(equal), the Mann-Whitney U / (n1 n0),
  computed from mid-ranks of the pooled sample: AUC = (R1 - n1 (n1 + 1) / 2) / (n1 n0), where R1
  is the rank sum of the n1 positives.
* Clopper-Pearson (exact) interval for k successes in n trials at level 1 - alpha:
  lower = Beta^-1(alpha/2; k, n - k + 1) (0 when k = 0),
  upper = Beta^-1(1 - alpha/2; k + 1, n - k) (1 when k = n).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as _st


def finite_scores(x: Any, what: str) -> np.ndarray:
    """`x` as a flat float64 array; ValueError naming `what` if it is empty or not finite."""
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{what}: no scores (the set is empty)")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: scores contain NaN or infinity")
    return a


def roc_auc(member_scores: Any, nonmember_scores: Any) -> float:
    """ROC AUC of scores that should be higher for the first group (members, positives) than for
    the second: P(first > second) + 1/2 P(equal)  (Mann-Whitney).

    0.5 is chance, 1.0 a perfect separation, below 0.5 a score that points the wrong way.
    """
    x = finite_scores(member_scores, "member_scores")
    y = finite_scores(nonmember_scores, "nonmember_scores")
    ranks = _st.rankdata(np.concatenate([x, y]))  # mid-ranks: a tie counts 1/2 each way
    n1, n0 = x.size, y.size
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def roc_auc_of_labels(scores: Any, truth: Any) -> float:
    """`roc_auc` of `scores` with positives where `truth` is true; nan if one class is empty
    (a label absent from a split has no AUC, which is not an error)."""
    scores = np.asarray(scores)
    truth = np.asarray(truth).astype(bool)
    if truth.all() or not truth.any():
        return math.nan
    return roc_auc(scores[truth], scores[~truth])


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided 1 - alpha interval for a binomial proportion k / n.

    lower = Beta^-1(alpha/2; k, n-k+1) (0 if k = 0); upper = Beta^-1(1-alpha/2; k+1, n-k) (1 if k = n).
    It covers the true rate with probability >= 1 - alpha for every rate (conservative).
    With n = 0 nothing is known and the interval is (0, 1).
    """
    k, n = int(k), int(n)
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n == 0:
        return 0.0, 1.0
    lower = 0.0 if k == 0 else float(_st.beta.ppf(alpha / 2, k, n - k + 1))
    upper = 1.0 if k == n else float(_st.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lower, upper
