"""Audit statistics against values worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from synthmed.audit.stats import (
    auc_bootstrap_ci, clopper_pearson, empirical_epsilon, epsilon_from_rate, min_nonmembers_for_fpr,
    roc_auc, roc_curve, tpr_at_fpr,
)

M = [3.0, 2.0, 1.0]
N = [2.0, 0.0]


def test_auc_hand_example_with_tie():
    # pairs (member, non-member): (3,2)=1 (3,0)=1 (2,2)=1/2 (2,0)=1 (1,2)=0 (1,0)=1 -> 4.5 / 6
    assert roc_auc(M, N) == pytest.approx(0.75)
    # swapping roles mirrors the AUC: 1 - 0.75
    assert roc_auc(N, M) == pytest.approx(0.25)
    assert roc_auc([1, 1], [1, 1, 1]) == pytest.approx(0.5)  # all ties: every pair counts 1/2
    assert roc_auc([5, 6], [1, 2, 3]) == 1.0


def test_auc_matches_pairwise_definition_random():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, 40).astype(float)  # many ties on purpose
    y = rng.integers(0, 5, 31).astype(float)
    pairwise = ((x[:, None] > y[None]) + 0.5 * (x[:, None] == y[None])).mean()
    assert roc_auc(x, y) == pytest.approx(pairwise)


def test_roc_curve_hand_example():
    # distinct thresholds 3,2,1,0 (rule: member if score >= t):
    # t=3: TP 1/3, FP 0; t=2: TP 2/3, FP 1/2; t=1: TP 1, FP 1/2; t=0: TP 1, FP 1
    fpr, tpr = roc_curve(M, N)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 1, 1])
    # trapezoid area: 0 + 0.5*(1/3+2/3)/2 + 0 + 0.5*1 = 0.75 = AUC
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)


def test_bootstrap_ci_properties():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1, 1, 200), rng.normal(0, 1, 300)
    lo, hi = auc_bootstrap_ci(x, y, n_boot=500, seed=3)
    assert lo < roc_auc(x, y) < hi
    assert (lo, hi) == auc_bootstrap_ci(x, y, n_boot=500, seed=3)  # seeded
    assert (lo, hi) != auc_bootstrap_ci(x, y, n_boot=500, seed=4)
    # 4x the data -> about half the width
    lo4, hi4 = auc_bootstrap_ci(rng.normal(1, 1, 800), rng.normal(0, 1, 1200), n_boot=500, seed=3)
    assert 0.35 < (hi4 - lo4) / (hi - lo) < 0.7
    # perfect separation: every resample is perfectly separated too
    assert auc_bootstrap_ci([5, 6, 7], [1, 2], n_boot=50) == (1.0, 1.0)


def test_bootstrap_ci_coverage():
    # true AUC of N(mu,1) vs N(0,1) is Phi(mu / sqrt 2); a 90 % interval should cover it ~90 %
    mu = 0.5
    true_auc = st.norm.cdf(mu / math.sqrt(2))
    rng = np.random.default_rng(7)
    hits = 0
    reps = 150
    for r in range(reps):
        lo, hi = auc_bootstrap_ci(rng.normal(mu, 1, 60), rng.normal(0, 1, 60), n_boot=200,
                                  alpha=0.10, seed=r)
        hits += lo <= true_auc <= hi
    assert 0.80 <= hits / reps <= 0.97


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (1, 1000), (57, 120), (0, 1)])
def test_clopper_pearson_matches_scipy(k, n):
    ref = st.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    lo, hi = clopper_pearson(k, n)
    assert lo == pytest.approx(ref.low, abs=1e-10)
    assert hi == pytest.approx(ref.high, abs=1e-10)


def test_clopper_pearson_closed_forms():
    # k = 0: upper = 1 - (alpha/2)^(1/n); for n = 10: 1 - 0.025**0.1 = 0.30850...
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(0.3084971, abs=1e-6))
    # k = n: lower = (alpha/2)^(1/n)
    assert clopper_pearson(10, 10) == (pytest.approx(0.025 ** 0.1), 1.0)
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        clopper_pearson(5, 3)


def test_min_nonmembers_rule():
    # n >= log(alpha/2) / log(1 - fpr): log(0.025) = -3.688879
    # fpr 1 %: 3.688879 / 0.0100503 = 367.04 -> 368; fpr 0.1 %: / 0.0010005 = 3687.04 -> 3688
    assert min_nonmembers_for_fpr(0.01) == 368
    assert min_nonmembers_for_fpr(0.001) == 3688
    assert min_nonmembers_for_fpr(0.05) == 72  # 3.688879 / 0.0512933 = 71.92


def test_tpr_at_fpr_worked_example():
    # non-members score 0..99 (n0 = 100); target FPR 5 % allows 5 false positives.
    # members 99.5, 96.5, 94.5, 50. The lowest threshold with <= 5 non-members at or above it is
    # 94.5 (non-members 95..99 = 5); members >= 94.5: 3 of 4 -> TPR 0.75, FPR 0.05.
    y = np.arange(100.0)
    x = [99.5, 96.5, 94.5, 50.0]
    r = tpr_at_fpr(x, y, 0.05)
    assert r.threshold == 94.5
    assert r.tpr == 0.75 and r.fpr_achieved == 0.05
    assert r.tpr_ci == clopper_pearson(3, 4) and r.fpr_ci == clopper_pearson(5, 100)
    assert r.estimable and (r.n_members, r.n_nonmembers) == (4, 100)
    # 1 % needs 368 non-members (see test_min_nonmembers_rule): reported, flagged not estimable
    r1 = tpr_at_fpr(x, y, 0.01)
    assert r1.threshold == 99.0 and r1.tpr == 0.25  # only 99 is a false positive; member 99.5
    assert not r1.estimable and "368" in r1.note and "100 non-members" in r1.note
    assert r1.to_dict()["tpr_ci"] == list(r1.tpr_ci)


def test_tpr_at_fpr_ties_never_exceed_target():
    # non-members [1,1,1,0], target 0.5 -> at most 2 false positives. t=1 would give 3, so t=2.
    r = tpr_at_fpr([1.0, 2.0], [1.0, 1.0, 1.0, 0.0], 0.5)
    assert r.threshold == 2.0 and r.tpr == 0.5 and r.fpr_achieved == 0.0
    # nothing fits: every score is shared by too many non-members -> nobody is called a member
    r = tpr_at_fpr([1.0], [1.0, 1.0], 0.4)
    assert math.isinf(r.threshold) and r.tpr == 0.0


def test_empirical_epsilon_hand_values():
    # tpr .5 fpr .05: log(.5/.05) = log 10 = 2.302585; other side log(.95/.5) = 0.6419
    assert empirical_epsilon(0.5, 0.05) == pytest.approx(math.log(10))
    # delta .1: log(.4/.05) = log 8; (1-.05-.1)/.5 = 1.7 -> log 8 wins
    assert empirical_epsilon(0.5, 0.05, delta=0.1) == pytest.approx(math.log(8))
    # tpr .99 fpr .5: log 1.98 = .683 vs log(.5/.01) = log 50 -> complementary side wins
    assert empirical_epsilon(0.99, 0.5) == pytest.approx(math.log(50))
    assert empirical_epsilon(0.3, 0.3) == 0.0  # chance attack shows nothing
    assert empirical_epsilon(0.1, 0.3) == 0.0  # worse than chance: both logs negative -> 0
    assert math.isinf(empirical_epsilon(0.2, 0.0))


def test_epsilon_from_rate_is_conservative():
    y = np.arange(100.0)
    r = tpr_at_fpr([99.5, 96.5, 94.5, 50.0], y, 0.05)
    eps = epsilon_from_rate(r)
    assert eps == empirical_epsilon(r.tpr_ci[0], r.fpr_ci[1])
    assert eps < empirical_epsilon(r.tpr, r.fpr_achieved)  # point estimate log(15) is optimistic
    # CP(3,4) lower = 0.19412, CP(5,100) upper = 0.11284 -> log(0.19412/0.11284) = 0.5425
    assert eps == pytest.approx(math.log(0.194120 / 0.112836), abs=1e-3)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        roc_auc([], [1.0])
    with pytest.raises(ValueError):
        roc_auc([np.nan], [1.0])
