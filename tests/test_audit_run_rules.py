"""The audit's rules on hand-made numbers: each decision boundary, both sides."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthmed.audit.profile import AuditProfile, load_profile
from synthmed.audit.verdict import AttackMeasure, MemorisationMeasure, evaluate
from synthmed.config import load_config
from synthmed.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = load_profile(ROOT / "configs" / "audit-public.yaml")
CONTROLLED = load_profile(ROOT / "configs" / "audit-controlled.yaml")


def attack(auc=0.5, ci=(0.4, 0.6), tpr=0.01, tpr_ci=(0.0, 0.05), fpr_ci=(0.0, 0.07), estimable=False):
    return AttackMeasure("dcr", "pixel", auc, ci, tpr, tpr_ci, 0.0, fpr_ci, estimable, "not estimable: few")


def sure(auc=0.5, ci=(0.44, 0.56), name="dcr", space="pixel"):
    """A conclusive null attack: its range excludes 0.6 and the 1 % FPR is measured."""
    return AttackMeasure(name, space, auc, ci, 0.01, (0.002, 0.03), 0.01, (0.004, 0.018), True, "")


def ident():
    """The re-identification attack's conclusive null measure (the public tier requires it)."""
    return sure(name="identity", space="reid")


def mem(flagged=0, n=100, rate_ci=(0.0, 0.04), null_ci=(0.0, 0.05), hard=0):
    return MemorisationMeasure(n, flagged, rate_ci, 0.01, null_ci, hard, 0.1)


def rules(v):
    return {r.rule: r for r in v.rules}


def test_shipped_profiles_load_and_controlled_is_looser():
    assert PUBLIC.tier == "public" and CONTROLLED.tier == "controlled"
    assert CONTROLLED.attacks.max_auc > PUBLIC.attacks.max_auc
    assert CONTROLLED.attacks.max_tpr > PUBLIC.attacks.max_tpr
    # 6 attack/space pairs and the identity attack (AUC, TPR and its link-excess test) -> 16
    # statistical rules share the 5 % (Bonferroni)
    assert PUBLIC.identity.enabled and CONTROLLED.identity.enabled
    assert not PUBLIC.identity.fallback_can_pass
    assert PUBLIC.n_statistical_rules() == 16
    assert PUBLIC.decision_alpha() == pytest.approx(0.05 / 16)
    # without it, as before the identity section existed
    assert AuditProfile().n_statistical_rules() == 13 and not AuditProfile().identity.enabled


def test_profile_errors_name_the_key(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("attacks:\n  max_auc: 0.55\n  auc_evidence_above: 0.6\n")
    with pytest.raises(ConfigError, match="auc_evidence_above must be below max_auc"):
        load_config(f, AuditProfile)
    f.write_text("tier: open\n")
    with pytest.raises(ConfigError, match="tier.*'public'.*'controlled'"):
        load_config(f, AuditProfile)


def test_auc_rule_boundaries():
    unsure = rules(evaluate(PUBLIC, [attack(0.55, (0.45, 0.65))], mem()))["attack_auc:dcr/pixel"]
    assert unsure.outcome == "inconclusive" and not unsure.passed
    assert "too few patients to rule out an AUC of 0.60 (the range reaches 0.65)" in unsure.explanation
    ok = rules(evaluate(PUBLIC, [sure(0.55, (0.51 - 0.02, 0.59)), ident()], mem()))["attack_auc:dcr/pixel"]
    assert ok.passed and ok.outcome == "pass" and "no such leak" in ok.explanation
    at_limit = rules(evaluate(PUBLIC, [attack(0.60, (0.45, 0.75))], mem()))["attack_auc:dcr/pixel"]
    assert not at_limit.passed and "reaches the limit" in at_limit.explanation
    evidence = rules(evaluate(PUBLIC, [attack(0.57, (0.51, 0.63))], mem()))["attack_auc:dcr/pixel"]
    assert not evidence.passed and "low end of the range" in evidence.explanation
    # the controlled tier tolerates the same numbers (its leak to rule out is 0.7)
    assert evaluate(CONTROLLED, [sure(0.57, (0.51, 0.63))], mem()).verdict == "pass"
    assert evaluate(CONTROLLED, [sure(0.65, (0.61, 0.69))], mem()).verdict == "fail"


def test_a_whitebox_auc_far_below_half_fails_and_a_synthetic_only_one_does_not():
    """A white-box score that ranks the members LAST sets them apart (PIA on 100-copy canaries:
    AUC 0.02); mirrored limits fail it. An attack on the synthetic images alone keeps the
    one-sided rule: its AUC can sit far below 0.5 with no training patient involved (the
    holdout's images released as synthetic give DCR AUC 0.00)."""
    from dataclasses import replace

    low = sure(0.05, (0.01, 0.12), name="pia", space="model")
    one_sided = rules(evaluate(PUBLIC, [low, ident()], mem()))["attack_auc:pia/model"]
    assert one_sided.passed  # what the audit said before: "no such leak"
    two = rules(evaluate(PUBLIC, [replace(low, two_sided=True), ident()], mem()))["attack_auc:pia/model"]
    assert not two.passed and two.outcome == "fail" and "other way round" in two.explanation
    # the mirrored evidence bound: the high end below 0.50
    below = replace(sure(0.45, (0.41, 0.49), name="loss", space="model"), two_sided=True)
    r = rules(evaluate(PUBLIC, [below, ident()], mem()))["attack_auc:loss/model"]
    assert r.outcome == "fail" and "high end of the range" in r.explanation
    # a white-box null whose interval covers 0.5 still passes
    fine = replace(sure(0.48, (0.43, 0.55), name="loss", space="model"), two_sided=True)
    assert rules(evaluate(PUBLIC, [fine, ident()], mem()))["attack_auc:loss/model"].passed


def test_a_verdict_is_pass_fail_or_inconclusive_with_patients_needed():
    from synthmed.audit.verdict import AuditSize

    # nothing shows a leak, but the range reaches the leak: inconclusive, with a size
    size = AuditSize(n_holdout=60, n_evaluated=30)
    v = evaluate(PUBLIC, [sure(0.50, (0.36, 0.66)), ident()], mem(), size=size)
    assert v.verdict == "inconclusive" and not v.passed and v.failed_rules() == []
    # h = 0.16, 0.10 to go: 30 evaluated * 2.56 -> 77 evaluated, 154 holdout (half calibrate)
    assert v.patients_needed == 154 and v.power["evaluated_nonmembers_needed"] == 77
    # the TPR at 1 % FPR not estimable: inconclusive too, and its need dominates
    v = evaluate(PUBLIC, [attack(0.5, (0.45, 0.55)), ident()], mem(), size=size, alpha=0.05 / 13)
    assert v.verdict == "inconclusive"
    (r,) = v.inconclusive_rules()
    assert r.rule == "attack_tpr_at_fpr:dcr/pixel" and r.nonmembers_needed == 623  # log(alpha/2) / log(0.99)
    assert v.patients_needed == 1246
    # a failure wins over everything
    v = evaluate(PUBLIC, [attack(0.5, (0.36, 0.66)), sure(0.7, (0.62, 0.78))], mem(), size=size)
    assert v.verdict == "fail" and v.patients_needed is None
    # conclusive: pass (with the re-identification attack the public tier requires)
    assert evaluate(PUBLIC, [sure(), ident()], mem(), size=size).verdict == "pass"
    v = evaluate(PUBLIC, [sure()], mem(), size=size)
    assert v.verdict == "inconclusive" and [r.rule for r in v.inconclusive_rules()] == ["attack_auc:identity"]


def test_rule_out_auc_is_validated_and_used(tmp_path):
    prof = AuditProfile(tier="controlled",
                        attacks={"max_auc": 0.7, "rule_out_auc": 0.6, "auc_evidence_above": 0.5})
    assert evaluate(prof, [sure(0.55, (0.50, 0.62))], mem()).verdict == "inconclusive"
    assert evaluate(prof, [sure(0.55, (0.50, 0.59))], mem()).verdict == "pass"
    f = tmp_path / "p.yaml"
    f.write_text("attacks:\n  max_auc: 0.6\n  rule_out_auc: 0.65\n")
    with pytest.raises(ConfigError, match="rule_out_auc must be above auc_evidence_above and at most max_auc"):
        load_config(f, AuditProfile)


def test_tpr_rule_uses_the_fpr_bound_when_not_estimable():
    # 10 % of members found, at least 6 %, but false alarms may be up to 7 %: not shown
    a = attack(tpr=0.10, tpr_ci=(0.06, 0.16), fpr_ci=(0.0, 0.07), estimable=False)
    r = rules(evaluate(PUBLIC, [a], mem()))["attack_tpr_at_fpr:dcr/pixel"]
    # no evidence of a leak, but not measured at 1 %: inconclusive, never a pass
    assert r.outcome == "inconclusive" and r.threshold == pytest.approx(0.07)
    assert "too few holdout patients" in r.explanation and "cannot be measured" in r.explanation
    # at least 9 % found, false alarms at most 7 %: shown
    a = attack(tpr=0.15, tpr_ci=(0.09, 0.22), fpr_ci=(0.0, 0.07), estimable=False)
    assert not rules(evaluate(PUBLIC, [a], mem()))["attack_tpr_at_fpr:dcr/pixel"].passed
    # estimable with a tight FPR bound: the 2 % limit decides
    a = attack(tpr=0.05, tpr_ci=(0.025, 0.08), fpr_ci=(0.005, 0.018), estimable=True)
    r = rules(evaluate(PUBLIC, [a], mem()))["attack_tpr_at_fpr:dcr/pixel"]
    assert not r.passed and r.threshold == pytest.approx(0.02)
    assert rules(evaluate(CONTROLLED, [a], mem()))["attack_tpr_at_fpr:dcr/pixel"].passed  # 5 % limit


def test_memorisation_and_copy_rules():
    v = evaluate(PUBLIC, [attack()], mem(flagged=30, rate_ci=(0.2, 0.4), null_ci=(0.0, 0.05)))
    assert v.verdict == "fail" and not rules(v)["memorisation_rate_not_above_null"].passed
    v = evaluate(PUBLIC, [sure(), ident()], mem(flagged=3, rate_ci=(0.005, 0.09), null_ci=(0.0, 0.05)))
    assert v.verdict == "pass" and "within chance" in rules(v)["memorisation_rate_not_above_null"].explanation
    v = evaluate(PUBLIC, [attack()], mem(hard=1))
    assert v.verdict == "fail" and [r.rule for r in v.failed_rules()] == ["no_hard_copies"]
    assert v.tier == "public" and v.to_dict()["rules"][0]["rule"] == "no_hard_copies"


def test_an_attack_that_cannot_run_is_an_inconclusive_not_evaluated_rule():
    from synthmed.audit.runner import attack_settings

    assert attack_settings("domias", 40, 60) == ({"n_components": 5}, "")
    settings, note = attack_settings("domias", 3, 60)
    assert settings == {"n_components": 2} and "PCA reduced to 2 dims" in note
    assert attack_settings("domias", 1, 60)[0] is None
    assert attack_settings("mc_neighbourhood", 0, 60)[0] is None
    assert attack_settings("dcr", 0, 60) == ({}, "")
    for tier in ("public", "controlled"):
        prof = AuditProfile(tier=tier)
        v = evaluate(prof, [sure(), ident()], mem(), [("domias/pixel", "too few reference images")])
        # a required attack without evidence: the audit cannot pass, nor did it show a leak
        assert v.verdict == "inconclusive" and v.failed_rules() == []
        (r,) = v.inconclusive_rules()
        assert r.rule == "attack_auc:domias/pixel" and r.measured == "not evaluated"
        assert "too few reference images" in r.explanation and r.details["evaluated"] is False
        assert r.rule in v.power["not_settled_by_size"]
    assert evaluate(AuditProfile(), [sure(), ident()], mem()).verdict == "pass"


def test_the_public_tier_requires_the_identity_attack():
    """The re-identification attack not run (identity.enabled false, or no row for it) makes a
    public verdict inconclusive, never pass; its fallback counts when it ran; the controlled tier
    does not need it."""
    v = evaluate(PUBLIC, [sure()], mem())
    assert v.verdict == "inconclusive"
    (r,) = v.inconclusive_rules()
    assert r.rule == "attack_auc:identity" and "requires" in r.explanation
    assert evaluate(PUBLIC, [sure(), sure(name="identity_fallback", space="encoder")], mem()).verdict == "pass"
    assert evaluate(CONTROLLED, [sure()], mem()).verdict == "pass"
    # an identity network too weak to certify anything: inconclusive, not pass
    weak = AttackMeasure("identity", "reid", 0.5, (0.44, 0.56), 0.01, (0.002, 0.03), 0.01,
                         (0.004, 0.018), True, "", cannot_pass="the network cannot tell patients apart")
    v = evaluate(PUBLIC, [sure(), weak], mem())
    assert v.verdict == "inconclusive" and v.failed_rules() == []
