"""Must-show 1 (issue 11): a 200-patient cohort with 1-3 studies each is what its spec says.

The generator is tests/helpers_generate.py's linear-Gaussian model fitted to the real training
patients (a tiny network trained for seconds learns neither findings nor anatomy); everything
downstream of it is the product: the spec, the virtual patients, the conditions of each study,
the SDEdit follow-ups, the cohort files, the evaluate module's classifier and the audit's
re-identification network.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers_generate import VOCAB, fit_gaussian_model, toy_population
from synthmed.config import validate_config
from synthmed.data.cohort import Cohort
from synthmed.generate.manifest import read_manifest_rows
from synthmed.generate.runner import generate
from synthmed.generate.spec import CohortSpec
from synthmed.stats import clopper_pearson
from test_models import one_thread  # noqa: F401 (autouse fixture)

PREVALENCE = {"Effusion": 0.3, "Mass": 0.2}
FEMALE = 0.75  # far enough from 0.5 that a spec ignored would fail the tolerance
STUDIES = {1: 0.34, 2: 0.33, 3: 0.33}
APPEAR, RESOLVE = 0.15, 0.3
ALPHA = 0.001  # the tolerance: a correct generator fails one check in a thousand, per check
SHAPE, CELL = (24, 24), 4
FOLLOWUP = {"strength": 0.25}  # fresh_noise: the spec's default
# Floors from five seeds (population, cohort and spec seed s = 0-4, classifier seed 0;
# benchmarks/measure_generate_quality.py, 2-core CPU, torch 2.13.0): per label, first studies
# flagged at 0.889-0.978 (chance 0.27-0.40) with sample AUC 0.957-0.985; follow-ups, whose
# findings may have changed since the first study and which keep three quarters of it (SDEdit
# strength 0.25), at 0.614-0.769 with AUC 0.779-0.907; every contrast p < 1e-8.
FLOORS = {"first": (0.8, 0.9), "follow-up": (0.5, 0.7)}   # (rate, sample AUC)
# The re-identification network at test size. Over the same five seeds: verification AUC on the
# real holdout 1.000; a follow-up's nearest first study (of 200) is its own patient's in 1.000 of
# cases on every seed (186-218 follow-ups; top-5 1.000; chance 1/200). A follow-up is re-noised
# with its first study's own noise (the spec's fresh_noise 0.1 of it fresh) and moves from it,
# outside the findings, by RMS 0.015-0.016 ([0, 1] pixels), 0.72x what a real patient's second
# image does from their first (0.021). Classic SDEdit (all fresh), measured alongside, reaches only
# 0.902-0.934 (0.602-0.701 at the default strength 0.35) and moves 0.046 (0.066): the fresh
# draw redraws part of the anatomy. The floor sits under the five-seed minimum and above
# classic SDEdit. Links of virtual patients to training vs holdout patients: AUC 0.482-0.531
# (null 0.5, sd ~0.046 with 80 + 80 patients); virtual patients whose first study's best real
# match is a training patient 101-121 of 200 (0.505-0.605; pooled 0.57: the linear-Gaussian
# model's covariance, fitted on 80 patients in 36 dimensions, leans slightly to them).
REID = dict(steps=300, batch_size=32, dim=32, channels=(16, 32), min_patients_with_repeats=4,
            min_validation_patients=3, n_bootstrap=50)
REID_FLOOR = 0.97
LINK_AUC_CEILING = 0.7


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    images, pids, labels = toy_population(160, 3, shape=SHAPE, cell=CELL, seed=0)
    train = np.isin(pids, np.unique(pids)[:80])
    pipe = fit_gaussian_model(images[train], labels[train], k=(SHAPE[0] // CELL) ** 2)
    spec = validate_config({
        "patients": 200, "seed": 0, "batch_patients": 25,
        "studies": {"per_patient": STUDIES, "interval_days": {"min": 30, "max": 400}},
        "labels": {"prevalence": PREVALENCE, "appear": APPEAR, "resolve": RESOLVE},
        "age": {"mean": 60, "sd": 12, "min": 30, "max": 90}, "sex_ratio": FEMALE,
        "followup": FOLLOWUP}, CohortSpec)
    out = tmp_path_factory.mktemp("quality") / "cohort"
    generate(pipe, spec, out)
    return {"images": images, "pids": pids, "labels": labels, "train": train,
            "cohort": Cohort.open(out), "rows": read_manifest_rows(out)}


def _inside(k: int, n: int, p: float) -> bool:
    lo, hi = clopper_pearson(k, n, ALPHA)
    return lo <= p <= hi


def test_manifest_proportions_match_the_spec(world):
    rows = world["rows"]
    first = [r for r in rows if r.study_index == 0]
    assert len(first) == 200 and len({r.patient for r in rows}) == 200
    for label, p in PREVALENCE.items():
        k = sum(label in r.labels for r in first)
        assert _inside(k, 200, p), (label, k)
    k = sum(r.sex == "F" for r in first)
    assert _inside(k, 200, FEMALE), k
    per = {}
    for r in rows:
        per[r.patient] = per.get(r.patient, 0) + 1
    for count, p in STUDIES.items():
        assert _inside(sum(v == count for v in per.values()), 200, p), count
    # Follow-up transitions: findings appear and resolve at the spec's rates.
    by = {(r.patient, r.study_index): r for r in rows}
    appear = resolve = n_absent = n_present = 0
    for r in rows:
        if r.study_index == 0:
            continue
        before = by[(r.patient, r.study_index - 1)]
        for label in VOCAB:
            if label in before.labels:
                n_present += 1
                resolve += label not in r.labels
            else:
                n_absent += 1
                appear += label in r.labels
    assert n_present > 30 and n_absent > 100
    assert _inside(appear, n_absent, APPEAR) and _inside(resolve, n_present, RESOLVE)
    ages = np.array([r.age for r in first])
    assert ages.min() >= 30 and ages.max() <= 90 and abs(ages.mean() - 60) < 3


def test_a_classifier_trained_on_real_images_finds_the_conditioned_labels(world):
    """The evaluate module's classifier, trained on the real training images and calibrated on
    the real holdout, flags each finding in the studies conditioned on it far above chance, in
    first studies and in follow-ups (whose findings may differ from their first study's)."""
    from synthmed.evaluate.classifier import LabelClassifier
    from synthmed.evaluate.conditioning import label_rate

    x, y, train = world["images"], world["labels"], world["train"]
    clf = LabelClassifier(2, SHAPE, list(VOCAB), channels=(8, 16), seed=0)
    clf.fit(x[train], y[train], epochs=15, batch_size=32, lr=5e-3)
    cohort, rows = world["cohort"], world["rows"]
    images = np.asarray(cohort.images)
    follow = np.array([r.study_index > 0 for r in rows])
    for j, label in enumerate(VOCAB):
        has = np.array([label in r.labels for r in rows])
        for part, sel in (("first", ~follow), ("follow-up", follow)):
            rate = label_rate(clf, label, images[sel & has], real_images=x[~train],
                              real_targets=y[~train], contrast_samples=images[sel & ~has])
            rate_floor, auc_floor = FLOORS[part]
            assert rate.above_chance and rate.rate >= rate_floor, (label, part, rate)
            assert rate.sample_auc >= auc_floor, (label, part, rate)
            assert rate.contrast_p_value < 1e-6, (label, part, rate)


def test_follow_ups_reidentify_their_own_patient_and_no_real_one(world):
    """The audit's re-identification network, trained on the real training patients' repeat
    images: (a) each follow-up's nearest first study (of all 200 virtual patients) is its own
    patient's in at least 90 % of cases (chance: 1/200), as a real patient's would be; (b)
    virtual patients link to real training patients no more than to real holdout patients,
    which the generator never saw (the null)."""
    from synthmed.audit import reid
    from synthmed.stats import roc_auc

    x, pids, train = world["images"], world["pids"], world["train"]
    settings = reid.IdentitySettings(**REID)
    net = reid.train_reid_network(x[train], pids[train], settings, seed=0)
    check = reid.verify_network(net, x[~train], pids[~train], n_bootstrap=50, alpha=0.05, seed=0)
    assert check.estimable and check.ci[0] > 0.9, check  # it tells real patients apart
    rows, images = world["rows"], np.asarray(world["cohort"].images)
    patient = np.array([r.patient for r in rows])
    first = np.flatnonzero([r.study_index == 0 for r in rows])
    follow = np.flatnonzero([r.study_index > 0 for r in rows])
    e = net.embed(images)
    nearest = first[np.argmax(e[follow] @ e[first].T, axis=1)]
    hits = int((patient[nearest] == patient[follow]).sum())
    rate = hits / len(follow)
    lo, _ = clopper_pearson(hits, len(follow), 0.05)
    # The "at least 90 %", with 95 % confidence, and the floor measured over seeds.
    assert len(follow) > 150 and lo > 0.9 and rate >= REID_FLOOR, (rate, lo, hits, len(follow))
    # (b) the null: train and holdout patients are drawn alike; only train ones were fitted.
    links = reid.best_links(net, x, pids, images)
    in_train = np.isin(links.patients, np.unique(pids[train]))
    auc = roc_auc(links.score[in_train], links.score[~in_train])
    assert auc < LINK_AUC_CEILING, auc
    # Counted per virtual patient (by the first study): a patient's follow-ups show the same
    # person, so counting their images as separate draws would make the interval too narrow.
    shown = links.patient_of_synthetic(pids)[first]
    k = int(np.isin(shown, np.unique(pids[train])).sum())
    lo, hi = clopper_pearson(k, len(shown), ALPHA)
    assert lo <= 0.5 <= hi, (k, len(shown))  # half the real patients are training patients
