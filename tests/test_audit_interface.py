"""The attack interface: one registry names the attacks, profiles are checked against it, the rules
take their words from the attack class, a new attack plugs in with one class, and `--filter`
returns a new result instead of editing the old one."""

from __future__ import annotations

import numpy as np
import pytest

from helpers_nih import mixture_sampler, toy_dataset, write_plain_cohort
from synthmed.audit.attacks import (ATTACKS, Attack, AttackContext, AttackScores, get_attack,
                                    register_attack)
from synthmed.audit.profile import AuditProfile
from synthmed.audit.verdict import AttackMeasure, MemorisationMeasure, evaluate
from synthmed.config import load_config
from synthmed.data.dataset import Dataset
from synthmed.errors import ConfigError


def test_registry_holds_the_shipped_attacks_and_what_they_need():
    assert {"dcr", "domias", "mc_neighbourhood"} <= set(ATTACKS)
    assert get_attack("dcr").needs == frozenset({"synthetic"})
    assert "reference" in get_attack("domias").needs and "reference" in get_attack("mc_neighbourhood").needs
    with pytest.raises(KeyError, match="unknown attack 'nope'; known: .*dcr"):
        get_attack("nope")
    with pytest.raises(ValueError, match="already registered"):
        @register_attack
        class Again(Attack):
            name = "dcr"


def test_profile_validates_attack_names_against_the_registry(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("attacks:\n  attacks: [dcr, lira]\n")
    with pytest.raises(ConfigError, match="unknown attack 'lira'; known: dcr, domias, loss, mc_neighbourhood, pia, secmi, sima"):
        load_config(f, AuditProfile)


def test_rule_words_come_from_the_attack_class():
    m = AttackMeasure("domias", "pixel", 0.5, (0.4, 0.6), 0.0, (0.0, 0.05), 0.0, (0.0, 0.07), False, "x")
    mem = MemorisationMeasure(100, 0, (0.0, 0.04), 0.01, (0.0, 0.05), 0, 0.1)
    (rule,) = [r for r in evaluate(AuditProfile(), [m], mem).rules if r.rule == "attack_auc:domias/pixel"]
    assert get_attack("domias").describe in rule.explanation


@pytest.fixture
def toy(tmp_path):
    ds = toy_dataset(tmp_path / "ds", n_patients=80, per_patient=2, size=16)
    d = Dataset.open(ds)
    return tmp_path, ds, d


def test_a_new_attack_plugs_in_with_one_class_and_goes_through_the_same_statistics(toy):
    """An oracle that knows the members (it cheats, on purpose) must fail the audit on its own,
    through the shared statistics and rules, with its own words; a coin toss must not."""
    from synthmed.audit import run_audit

    tmp, ds, d = toy

    class Oracle(Attack):
        name = "test_oracle"
        describe = "reading the list of training patients"
        needs = frozenset()
        fixed_space = "oracle"

        def score(self, ctx: AttackContext) -> AttackScores:
            n_train = len(ctx.inputs.train)
            s = np.zeros(n_train + len(ctx.inputs.holdout))
            s[:n_train] = 1.0
            return AttackScores(s, note="knows the answer")

    class Coin(Oracle):
        name = "test_coin"
        describe = "tossing a coin"
        fixed_space = "coin"

        def score(self, ctx: AttackContext) -> AttackScores:
            rng = np.random.default_rng(ctx.seed)
            return AttackScores(rng.random(len(ctx.inputs.train) + len(ctx.inputs.holdout)))

    register_attack(Oracle)
    register_attack(Coin)
    try:
        cohort = write_plain_cohort(tmp / "c", mixture_sampler(np.asarray(d.images[d.indices("reference")]), 40))
        base = {"n_bootstrap": 200, "embedding": {"steps": 0}, "memorisation": {"aligned": False}}
        res = run_audit(ds, cohort, AuditProfile(**base, attacks={"attacks": ["dcr", "test_oracle", "test_coin"],
                                                                  "spaces": ["pixel"]}),
                        tmp / "a", seed=0)
        ran = {a["attack"]: a for a in res.audit["attacks"]}
        assert set(ran) == {"dcr", "test_oracle", "test_coin"}
        assert ran["test_oracle"]["auc"] == 1.0 and ran["test_oracle"]["space"] == "oracle"
        assert ran["test_oracle"]["note"] == "knows the answer"
        rules = {r.rule: r for r in res.verdict.rules}
        assert not rules["attack_auc:test_oracle/oracle"].passed
        assert "reading the list of training patients" in rules["attack_auc:test_oracle/oracle"].explanation
        assert rules["attack_auc:test_coin/coin"].outcome != "fail"  # a coin shows no leak
        # three attacks: 2 x 3 + 1 intervals share the error budget
        assert res.audit["thresholds"]["statistical_rules"] == 7
        assert res.verdict.verdict == "fail"
    finally:
        ATTACKS.pop("test_oracle", None)
        ATTACKS.pop("test_coin", None)


def test_filter_returns_a_new_result_and_leaves_the_old_one(toy):
    from synthmed.audit.filter import filter_and_reaudit
    from synthmed.audit.inputs import load_inputs
    from synthmed.audit.runner import audit_inputs
    from synthmed.data.cohort import Cohort

    tmp, ds, d = toy
    images = mixture_sampler(np.asarray(d.images[d.indices("reference")]), 40, seed=1)
    images[[3, 9]] = np.asarray(d.images[d.indices("train")])[[0, 5]]
    cohort = write_plain_cohort(tmp / "c", images)
    prof = AuditProfile(n_bootstrap=200, embedding={"steps": 0}, memorisation={"aligned": False},
                        attacks={"spaces": ["pixel"]})
    inputs, dset, co = load_inputs(ds, cohort, prof)
    first = audit_inputs(inputs, prof, tmp / "out", seed=0, embedder=None,
                         dataset_fingerprint=dset.fingerprint(), cohort_fingerprint=co.fingerprint())
    before = first.audit
    new = filter_and_reaudit(first, inputs, Cohort.open(cohort), prof, seed=0, embedder=None,
                             dataset_fingerprint=dset.fingerprint())
    assert new is not first and first.filtered is None and "filter" not in first.audit
    assert first.audit == before
    assert new.audit["filter"]["n_removed"] == 2 and new.filtered is not None
    assert new.report.filtered == new.audit["filter"] and new.report.audit["filter"]["n_removed"] == 2
    assert new.filtered.audit["filtered_from"]["n_removed"] == 2
    assert (tmp / "out" / "filtered" / "audit.json").exists()
