"""Calibration: a generator that never saw the members must not fail the audit more than 5 % of
the time, over random patient-level member / non-member splits of real NIH patients.

The generator samples mixtures of REFERENCE patients' images (plus noise); members and
non-members are drawn at random from the other patients, so every split is a null case. The
rules are the public profile's, applied by `verdict.evaluate` exactly as an audit applies them.
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
    assert res.fail_rate <= 0.05
    # the null really is null: the attacks average a coin toss
    for name, v in res.aucs.items():
        assert abs(np.mean(v) - 0.5) < 0.03, (name, np.mean(v))

