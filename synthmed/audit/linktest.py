"""Do training patients crowd the top of the identity ranking? An exact test with power for a
small leaked share.

A generator that learned a few patients' anatomy leaks THEM, not everybody: with a tenth of the
members leaked, even a perfect re-identification network moves the patient-level AUC only to
about 0.5 + 0.1 / 2 = 0.55, inside any interval an audit of a few hundred patients can afford. An
AUC rule cannot see such a leak. What a leak does do is put the leaked members at the TOP of the
ranking (their best link to a synthetic image is as strong as a second image of themselves),
above nearly every holdout patient. So the test looks at the top of the pooled ranking:

* pool the member and non-member (holdout) patients' identity scores (best link to any synthetic
  image) and take the top K patients, for a few tail sizes K fixed in advance as shares of the
  pool (`tails`);
* x = members among them. If nobody leaked, members and non-members are a random split of
  patients whose scores do not depend on who was called a member, so given the scores x is
  exactly Hypergeometric(N, n_members, K) (a permutation test; ties at the K-th score are
  handled by taking every patient tied with it, which keeps it exact);
* the one-sided p-value of each tail, Bonferroni over the tails, is the rule's evidence: fail
  when it is at most the audit's per-rule alpha.

Fail closed: a test that found nothing is a pass only when it could have found the leak this tier
must rule out (`rule_out_share` of the members, each as recognisable as a second real image of
themselves). That power comes from the network's own verification on held-out patients: the
share of genuine pairs (two images of one patient) whose similarity reaches each tail's
threshold is the chance that a leaked member would land in that tail. With that sensitivity the
power is computed by simulation (seeded) at the audit's own sizes; below `min_power` the rule is
inconclusive, with the holdout size at which it would be conclusive (or none, when only a better
network would do).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["LinkExcess", "link_excess", "tail_power", "sensitivity_at", "DEFAULT_TAILS"]

DEFAULT_TAILS = (0.01, 0.02, 0.05, 0.1, 0.2)
POWER_DRAWS = 2000
SIZE_STEPS = (1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 16)


@dataclass(frozen=True)
class LinkExcess:
    """The tail test's result (plain numbers; no patient id)."""

    n_members: int
    n_nonmembers: int
    tail_shares: tuple[float, ...]
    tail_sizes: tuple[int, ...]          # patients in each tail (K, ties included)
    members_in_tail: tuple[int, ...]
    expected_members: tuple[float, ...]  # K * n_members / N: what chance gives
    thresholds: tuple[float, ...]        # the K-th largest score of the pool
    p_values: tuple[float, ...]          # one-sided, per tail
    p_value: float                       # min over tails, times the number of tails (<= 1)
    best_tail: int                       # index of the tail with the smallest p-value
    rule_out_share: float
    sensitivity: tuple[float, ...] | None  # per tail: P(a leaked member reaches it), None: unknown
    power: float | None                  # P(this audit fails a leak of rule_out_share), None: unknown
    nonmembers_needed: int | None = None  # holdout patients for power >= min_power (None: no size)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("tail_shares", "tail_sizes", "members_in_tail", "expected_members", "thresholds",
                  "p_values", "sensitivity"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d


def sensitivity_at(genuine_quantiles: Sequence[float] | None, thresholds: Sequence[float]) -> tuple[float, ...] | None:
    """Share of genuine pairs whose similarity reaches each threshold, read off the verification's
    genuine-pair quantiles (equally spaced probabilities 0..1); conservative: the share of
    quantile points at or above t, so it never overstates the network."""
    if not genuine_quantiles:
        return None
    q = np.sort(np.asarray(genuine_quantiles, dtype=np.float64))
    if q.size < 2 or not np.all(np.isfinite(q)):
        return None
    # with m + 1 quantile points at probabilities k / m, at least (points >= t - 1) / m of the
    # genuine pairs reach t
    m = q.size - 1
    return tuple(float(max(0, int(np.sum(q >= t)) - 1) / m) for t in thresholds)


def _nested_counts(rng: np.random.Generator, n: int, reach: np.ndarray, draws: int) -> np.ndarray:
    """(draws, tails) counts of n patients in nested tails, a patient reaching tail j with
    probability reach[j] (non-decreasing in j): one multinomial draw over the rings between tails."""
    reach = np.maximum.accumulate(np.clip(np.asarray(reach, dtype=np.float64), 0.0, 1.0))
    rings = np.diff(np.concatenate([[0.0], reach, [1.0]]))
    return np.cumsum(rng.multinomial(n, np.clip(rings, 0.0, None) / rings.sum(), size=draws)[:, :-1], axis=1)


def tail_power(n_members: int, n_nonmembers: int, tail_shares: Sequence[float], sensitivity: Sequence[float],
               rule_out_share: float, alpha: float, *, draws: int = POWER_DRAWS, seed: int = 0) -> float:
    """Probability that the tail test fails an audit of these sizes in which `rule_out_share` of
    the members leaked, each leaked member reaching tail j with probability `sensitivity[j]` and
    every other patient with the tail's own share (what nobody-leaked gives). A planning figure:
    the tails' cut scores are taken where this audit found them."""
    from scipy.stats import hypergeom

    q0 = np.asarray(tail_shares, dtype=np.float64)
    sens = np.maximum(np.asarray(sensitivity, dtype=np.float64), q0)
    n_leak = int(round(rule_out_share * n_members))
    rng = np.random.default_rng(seed)
    xm = _nested_counts(rng, n_leak, sens, draws) + _nested_counts(rng, n_members - n_leak, q0, draws)
    xh = _nested_counts(rng, n_nonmembers, q0, draws)
    p = hypergeom.sf(xm - 1, n_members + n_nonmembers, n_members, xm + xh)
    return float((np.minimum(1.0, p * q0.size) <= alpha).any(axis=1).mean())


def link_excess(member_scores: np.ndarray, nonmember_scores: np.ndarray, alpha: float, *,
                tails: Sequence[float] = DEFAULT_TAILS, rule_out_share: float = 0.1,
                genuine_quantiles: Sequence[float] | None = None, min_power: float = 0.8,
                seed: int = 0) -> LinkExcess:
    """The tail test on patient-level identity scores (higher: linked more strongly)."""
    from scipy.stats import hypergeom

    m = np.asarray(member_scores, dtype=np.float64)
    h = np.asarray(nonmember_scores, dtype=np.float64)
    nm, nh = int(m.size), int(h.size)
    n = nm + nh
    shares = tuple(float(t) for t in tails)
    if nm == 0 or nh == 0:
        raise ValueError("the tail test needs member and non-member patients")
    pooled = np.sort(np.concatenate([m, h]))[::-1]
    sizes, xs, thr, pv, expct = [], [], [], [], []
    for t in shares:
        k = min(n, max(1, int(math.ceil(t * n - 1e-9))))
        cut = pooled[k - 1]
        kk = int(np.sum(pooled >= cut))       # ties at the cut join the tail (exact given scores)
        x = int(np.sum(m >= cut))
        sizes.append(kk)
        xs.append(x)
        thr.append(float(cut))
        expct.append(kk * nm / n)
        pv.append(float(hypergeom.sf(x - 1, n, nm, kk)))
    best = int(np.argmin(pv))
    p = float(min(1.0, pv[best] * len(shares)))
    sens = sensitivity_at(genuine_quantiles, thr)
    power, needed, note = None, None, ""
    if sens is None:
        note = ("the network's record has no genuine-pair similarities from its verification, so "
                "the chance that a leaked patient reaches the top of the ranking is unknown")
    else:
        power = tail_power(nm, nh, shares, sens, rule_out_share, alpha, seed=seed)
        # a leaked patient no likelier to reach a tail than anyone: no audit size helps
        if power < min_power and any(s > q for s, q in zip(sens, shares)):
            for f in SIZE_STEPS:
                big_m, big_h = int(math.ceil(f * nm)), int(math.ceil(f * nh))
                if tail_power(big_m, big_h, shares, sens, rule_out_share, alpha, seed=seed) >= min_power:
                    needed = big_h
                    break
    return LinkExcess(nm, nh, shares, tuple(sizes), tuple(xs), tuple(expct), tuple(thr), tuple(pv), p, best,
                      float(rule_out_share), sens, power, needed, note)
