"""synthmed.audit.power: does an interval rule a leak out, and how many patients would."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthmed.audit import power
from synthmed.audit.stats import auc_bootstrap_ci, min_nonmembers_for_fpr, roc_auc


def test_an_interval_below_the_leak_excludes_it():
    e = power.auc_exclusion(0.50, (0.44, 0.57), 0.6, 400)
    assert e.excluded and e.n_needed == 400
    assert e.half_width == pytest.approx(0.07) and e.needed_half_width == pytest.approx(0.10)


def test_touching_the_leak_is_not_excluding_it():
    # an upper bound equal to the leak does not rule it out (strict)
    e = power.auc_exclusion(0.52, (0.45, 0.60), 0.6, 100)
    assert not e.excluded and e.n_needed is not None and e.n_needed > 100


def test_patients_needed_known_answer():
    # h = 0.66 - 0.50 = 0.16, target 0.60 - 0.50 = 0.10: n * (0.16 / 0.10)^2 = 26 * 2.56 = 66.56
    e = power.auc_exclusion(0.50, (0.36, 0.66), 0.6, 26)
    assert not e.excluded and e.n_needed == 67
    # asymmetric interval: only the upper half counts (0.58 - 0.55 = 0.03 vs 0.05 to go)
    assert power.auc_exclusion(0.55, (0.30, 0.58), 0.6, 50).excluded
    # h = 0.10, target 0.04: 50 * 6.25 = 312.5 -> 313
    assert power.auc_exclusion(0.56, (0.50, 0.66), 0.6, 50).n_needed == 313


def test_needed_size_is_the_smallest_that_works():
    for n_now, h, t in [(26, 0.16, 0.10), (53, 0.123, 0.031), (7, 0.5, 0.01), (300, 0.02, 0.019)]:
        n = power.scaled_size(n_now, h, t)
        projected = lambda m: h * math.sqrt(n_now / m)  # noqa: E731
        assert projected(n) < t, (n_now, h, t, n)
        assert projected(n - 1) >= t or n == n_now, (n_now, h, t, n)


def test_no_size_excludes_a_leak_the_estimate_already_reaches():
    e = power.auc_exclusion(0.61, (0.55, 0.68), 0.6, 80)
    assert not e.excluded and e.n_needed is None and e.needed_half_width < 0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        power.upper_half_width(0.5, (0.6, 0.4))
    with pytest.raises(ValueError):
        power.upper_half_width(float("nan"), (0.4, 0.6))
    with pytest.raises(ValueError):
        power.scaled_size(0, 0.1, 0.05)
    with pytest.raises(ValueError):
        power.holdout_needed(10, 0, 5)


def test_holdout_needed_keeps_the_calibration_share():
    # half of 53 holdout patients calibrate (27 evaluated): 622 evaluated need 1221 holdout
    assert power.holdout_needed(622, 26, 53) == math.ceil(622 * 53 / 26)
    assert power.holdout_needed(100, 100, 100) == 100


def test_fpr_needs_match_the_audit_statistics():
    alpha = 0.05 / 13
    assert power.nonmembers_for_fpr(0.01, alpha) == min_nonmembers_for_fpr(0.01, alpha)
    assert power.nonmembers_for_fpr(0.01, 0.05) == 368


def test_bootstrap_half_width_scales_as_one_over_sqrt_n():
    """The assumption behind `scaled_size`, on the audit's own bootstrap: quadrupling both
    groups halves the upper half-width (null scores; mean over seeds)."""
    ratios = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        widths = []
        for n in (60, 240):
            m, x = rng.normal(size=n), rng.normal(size=n)
            auc = roc_auc(m, x)
            ci = auc_bootstrap_ci(m, x, n_boot=600, alpha=0.05 / 13, seed=seed)
            widths.append(power.upper_half_width(auc, ci) + (auc - ci[0]))
        ratios.append(widths[0] / widths[1])
    assert 1.7 < float(np.mean(ratios)) < 2.3, ratios


def test_the_patients_an_inconclusive_audit_asks_for_settle_it(tmp_path):
    """A generator that never saw the members (mixtures of reference images), on toy data: with
    80 patients the audit is inconclusive and names a holdout size; a dataset re-made at the same
    split fractions with 20 % more than that holdout gives a conclusive pass. Pixel space, a
    5 % FPR target and an AUC of 0.7 to rule out keep the sizes small (the rules are the same).
    Toy seeds 2 (here), 7 and 11: the small audit asks for 110 holdout patients (the TPR rule's
    need at 5 % FPR and alpha 0.05/7: log(alpha/2)/log(0.95); the toy has a reference split, so
    every holdout patient is scored) and the re-made audit passes. (With seed 5 the small audit
    fails a rule: a null audit may fail up to 5 % of the time, privacy_audits/calibration.md.)"""
    from helpers_nih import mixture_sampler, toy_dataset, write_plain_cohort
    from synthmed.audit import run_audit
    from synthmed.audit.profile import AuditProfile
    from synthmed.data.dataset import Dataset

    prof = AuditProfile(tier="controlled", n_bootstrap=300, embedding={"steps": 0},
                        memorisation={"aligned": False},
                        attacks={"spaces": ["pixel"], "target_fpr": 0.05, "max_tpr": 0.2,
                                 "max_auc": 0.7, "rule_out_auc": 0.7})

    def audit(n_patients: int, name: str):
        ds = toy_dataset(tmp_path / f"ds-{name}", n_patients=n_patients, per_patient=2, size=12, seed=2)
        d = Dataset.open(ds)
        ref = np.asarray(d.images[d.indices("reference")])
        cohort = write_plain_cohort(tmp_path / f"c-{name}", mixture_sampler(ref, 200, seed=3))
        return run_audit(ds, cohort, prof, tmp_path / f"a-{name}", seed=0).verdict

    small = audit(80, "small")
    assert small.verdict == "inconclusive" and small.failed_rules() == []
    need = small.patients_needed
    assert need is not None and need > small.power["n_holdout_patients"] == 20
    big = audit(int(math.ceil(1.2 * need / 0.25)), "big")
    assert big.verdict == "pass", [(r.rule, r.outcome, r.explanation) for r in big.rules if not r.passed]
