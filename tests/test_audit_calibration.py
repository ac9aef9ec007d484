"""Calibration: a generator that never saw the members must not fail the audit more than 5 % of
the time, over random patient-level member / non-member splits of real NIH patients.

The generator samples mixtures of REFERENCE patients' images (plus noise); members and
non-members are drawn at random from the other patients, so every split is a null case. The
rules are the public profile's, applied by `verdict.evaluate` exactly as an audit applies them.

The trained part is the one encoder. Spread over encoder seeds 0-3 (seeds 1-3 through a pytest
plugin overriding ContrastiveEncoder's seed; 2-core CPU, torch 2.13.0, ~40 s a run): null splits
failed 1, 2, 1, 1 of 50; mean AUCs within 0.004 of 0.5 (bound 0.03). The promise is a false-fail
rate <= 5 %, but 50 splits estimate it with a binomial error of ~3 %: at the ~3 % rate seen, 3 or
more failures happen 19 % of the time, so `<= 2 of 50` (the old `fail_rate <= 0.05`, met with no
room at seed 1) would fail by chance on some machine. The bound is <= 4 of 50: above the worst
seen by two, exceeded by chance 1.7 % of the time at a 3 % rate, and exceeded 57 % of the time by
an audit that falsely fails 10 % of null splits.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from helpers_nih import load_nih, mixture_sampler, split_patients
from synthmed.audit.calibration import calibrate
from synthmed.audit.profile import AuditProfile
from synthmed.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_audit_fails_at_most_5_percent_of_null_splits(nih_cxr, capsys):
    images, patients, *_ = load_nih(nih_cxr)
    patients = np.array(patients)
    which = split_patients(list(patients), {"reference": 0.25, "pool": 0.75}, seed=0)
    is_ref = np.array([which[p] == "reference" for p in patients])
    ref, pool, pool_patients = images[is_ref], images[~is_ref], patients[~is_ref]
    synthetic = mixture_sampler(ref, 300, seed=0)
    # same rules as configs/audit-public.yaml; fewer bootstrap resamples to keep 50 splits quick
    prof = load_config(ROOT / "configs" / "audit-public.yaml", AuditProfile,
                       overrides={"n_bootstrap": 500})
    from synthmed.audit.embeddings import ContrastiveEncoder

    # one encoder for all splits, fitted on the pool (members and non-members alike, so it
    # favours no split)
    enc = ContrastiveEncoder(2, images.shape[1:], dim=64, seed=0).fit(pool, steps=15, batch_size=64)
    t0 = time.perf_counter()
    res = calibrate(pool, pool_patients, synthetic, ref, prof, enc, n_splits=50, seed=0)
    secs = time.perf_counter() - t0
    with capsys.disabled():
        mean_auc = {k: round(float(np.mean(v)), 3) for k, v in res.aucs.items()}
        print(f"\ncalibration: {res.n_failed}/{res.n_splits} null splits failed ({res.failed_rules}); "
              f"an 'AUC upper bound < {prof.attacks.max_auc}' rule would fail "
              f"{res.n_failed_upper_bound_rule}/{res.n_splits}; mean AUCs {mean_auc}; {secs:.0f} s")
    assert res.n_splits == 50
    assert res.n_failed <= 4, (res.n_failed, res.failed_rules)
    # the null really is null: the attacks average a coin toss
    for name, v in res.aucs.items():
        assert abs(np.mean(v) - 0.5) < 0.03, (name, np.mean(v))

