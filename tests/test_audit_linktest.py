"""The identity rule's link-excess test (synthmed.audit.linktest): exact under the null, powerful
for a small leaked share, and a pass only when it had the power to see the tier's leak."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthmed.audit.linktest import link_excess, sensitivity_at, tail_power
from synthmed.audit.profile import load_profile
from synthmed.audit.verdict import AttackMeasure, MemorisationMeasure, evaluate

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = load_profile(ROOT / "configs" / "audit-public.yaml")
ALPHA = PUBLIC.decision_alpha()
# a network whose genuine pairs (two images of a person) reach cosine 0.8-1.0 (uniformly)
STRONG = list(np.linspace(0.8, 1.0, 101))


def test_null_scores_fail_at_most_alpha_and_the_test_is_exact_with_ties():
    rng = np.random.default_rng(0)
    p = np.array([link_excess(rng.random(200), rng.random(200), 0.05).p_value for _ in range(600)])
    # Bonferroni over 4 tails: at most 5 % (it is below, the tails overlap)
    assert np.mean(p <= 0.05) <= 0.05 and np.mean(p <= 0.05) > 0.002
    # heavy ties (scores on a coarse grid) keep it at most alpha: ties at a cut join the tail
    tied = np.array([link_excess(rng.integers(0, 5, 150) / 4, rng.integers(0, 5, 150) / 4, 0.05).p_value
                     for _ in range(400)])
    assert np.mean(tied <= 0.05) <= 0.05


def test_a_tenth_of_members_leaked_fails_where_the_auc_barely_moves():
    from synthmed.stats import roc_auc

    rng = np.random.default_rng(1)
    m, h = rng.normal(0.5, 0.05, 300), rng.normal(0.5, 0.05, 300)
    m[:30] = rng.uniform(0.8, 1.0, 30)   # 10 % of members linked as strongly as a second image
    res = link_excess(m, h, ALPHA, genuine_quantiles=STRONG)
    assert roc_auc(m, h) < 0.56           # the AUC cannot show it
    assert res.p_value <= ALPHA and res.p_value < 1e-6
    assert res.members_in_tail[res.best_tail] >= 28 and res.tail_sizes == (6, 12, 30, 60, 120)
    # nothing leaked, same network: no fail, and the test had the power to see that leak
    null = link_excess(rng.normal(0.5, 0.05, 300), rng.normal(0.5, 0.05, 300), ALPHA, genuine_quantiles=STRONG)
    assert null.p_value > ALPHA and null.power >= 0.99 and null.nonmembers_needed is None


def test_power_follows_the_networks_sensitivity_and_the_audit_size():
    shares = (0.01, 0.02, 0.05, 0.1, 0.2)
    weak = tail_power(300, 300, shares, [0.2] * 5, 0.1, ALPHA)
    strong = tail_power(300, 300, shares, [0.9] * 5, 0.1, ALPHA)
    assert weak < 0.2 < 0.95 < strong
    assert tail_power(3000, 3000, shares, [0.2] * 5, 0.1, ALPHA) > weak + 0.5
    # no sensitivity at all: the leaked members are like anyone else, power ~ the false-fail rate
    assert tail_power(300, 300, shares, list(shares), 0.1, ALPHA) < 0.02
    # the sensitivity never overstates: the share of quantile points at or above t, minus one step
    assert sensitivity_at(STRONG, [0.9, 1.5, 0.0]) == pytest.approx((0.5, 0.0, 1.0), abs=0.011)
    assert sensitivity_at([], [0.5]) is None and sensitivity_at([0.3, float("nan")], [0.5]) is None


def _measure(link):
    return AttackMeasure("identity", "reid", 0.5, (0.45, 0.55), 0.01, (0.002, 0.03), 0.01, (0.004, 0.018),
                         True, "", link=link)


def _mem():
    return MemorisationMeasure(100, 0, (0.0, 0.04), 0.01, (0.0, 0.05), 0, 0.1)


def _row(v):
    (row,) = [r for r in v.rules if r.rule == "identity_link_excess:identity/reid"]
    return row


def test_the_rule_fails_on_evidence_passes_on_power_and_is_inconclusive_without_it():
    rng = np.random.default_rng(2)
    m, h = rng.normal(0.5, 0.05, 300), rng.normal(0.5, 0.05, 300)
    m[:30] = 0.95
    fail = _row(evaluate(PUBLIC, [_measure(link_excess(m, h, ALPHA, genuine_quantiles=STRONG))], _mem()))
    assert fail.outcome == "fail" and "very unlikely by chance" in fail.explanation
    assert "27 of the top" in fail.explanation or "30 of the top" in fail.explanation
    m0 = rng.normal(0.5, 0.05, 300)
    ok = _row(evaluate(PUBLIC, [_measure(link_excess(m0, h, ALPHA, genuine_quantiles=STRONG))], _mem()))
    assert ok.outcome == "pass" and "no such leak" in ok.explanation and ok.details["power"] >= 0.8
    # a network whose genuine pairs rarely reach the top of the ranking: not a pass
    weak = list(np.linspace(0.0, 0.6, 101))
    low = _row(evaluate(PUBLIC, [_measure(link_excess(m0, h, ALPHA, genuine_quantiles=weak))], _mem()))
    assert low.outcome == "inconclusive" and low.details["power"] < 0.8
    assert "a network that recognises people better" in low.explanation and low.nonmembers_needed is None
    # middling: a larger audit would settle it, and says how large
    mid = list(np.linspace(0.45, 0.7, 101))
    need = _row(evaluate(PUBLIC, [_measure(link_excess(m0, h, ALPHA, genuine_quantiles=mid))], _mem()))
    assert need.outcome == "inconclusive" and need.nonmembers_needed and need.nonmembers_needed > 300
    # no genuine-pair similarities in the network's record: power unknown, inconclusive
    unknown = _row(evaluate(PUBLIC, [_measure(link_excess(m0, h, ALPHA))], _mem()))
    assert unknown.outcome == "inconclusive" and "genuine-pair" in unknown.explanation
