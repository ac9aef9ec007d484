"""Issue 13, build item 4: utility of a synthetic cohort, on cases whose answer is known.

Toy patients (tests/helpers_generate.py): each finding is a bright blob at its own place, so a
small classifier learns it in a few dozen steps. A "synthetic" set drawn from the same process
with correct labels must be as useful as real data (TSTR / TRTR near 1); the same images with
labels that carry no information about them must be useless (TSTR AUC near chance, ratio far
below 1).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers_generate import VOCAB, toy_population
from synthmed.errors import InputError
from synthmed.evaluate.utility import REGIMES, UtilityConfig, roc_curve, utility

LABELS = list(VOCAB)
CFG = UtilityConfig(channels=(8, 16, 16), steps=60, lr=5e-3, batch_size=32, n_bootstrap=100)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy():
    x, p, y = toy_population(50, 3, seed=0)
    tr = np.isin(p, np.unique(p)[:30])
    xs, _, ys = toy_population(30, 3, seed=1)
    return x[tr], y[tr], x[~tr], y[~tr], p[~tr], xs, ys


def _uninformative(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The images with labels independent of them by construction: within each group of images
    that show the same findings, every label pattern equally often (so no blob predicts any
    label); a group's remainder after a multiple of the pattern count is left out."""
    rng = np.random.default_rng(seed)
    patterns = np.array([[(k >> j) & 1 for j in range(y.shape[1])] for k in range(2 ** y.shape[1])],
                        np.float32)
    cells = y @ (2 ** np.arange(y.shape[1]))
    keep, labels = [], []
    for c in np.unique(cells):
        idx = rng.permutation(np.flatnonzero(cells == c))
        idx = idx[:idx.size - idx.size % len(patterns)]
        keep.append(idx)
        labels.append(np.tile(patterns, (idx.size // len(patterns), 1)))
    return x[np.concatenate(keep)], np.concatenate(labels)


@pytest.fixture(scope="module")
def correct(toy):
    xr, yr, xh, yh, ph, xs, ys = toy
    return utility(xr, yr, xs, ys, xh, yh, LABELS, config=CFG, seed=0, holdout_patients=ph)


@pytest.fixture(scope="module")
def shuffled(toy):
    xr, yr, xh, yh, ph, xs, ys = toy
    xu, yu = _uninformative(xs, ys, 3)
    return utility(xr, yr, xu, yu, xh, yh, LABELS, config=CFG, seed=0, holdout_patients=ph)


def test_synthetic_data_from_the_real_process_is_as_useful_as_real(correct):
    assert set(correct.regimes) == set(REGIMES)
    assert correct.macro_labels == LABELS and correct.not_evaluable == {}
    real = correct.regimes["real"].macro_auc
    assert real.value > 0.85  # the instrument works on this toy
    t = correct.tstr_trtr
    assert t is not None and 0.9 < t.value < 1.1 and t.low <= 1.0 <= t.high + 0.02
    for name in REGIMES:
        m = correct.regimes[name].macro_auc
        assert m.low <= m.value <= m.high  # the interval is about the point estimate
        assert m.high - m.low < 0.3
        assert set(correct.roc[name]) == set(LABELS)
    # the fair budget: every regime ran (about) the same optimiser steps, though real+synthetic
    # has twice the images; synthetic->real adds its fine-tuning stage
    steps = {n: r.optimiser_steps for n, r in correct.regimes.items()}
    assert abs(steps["real+synthetic"] - steps["real"]) <= 3
    assert steps["synthetic->real"] == steps["synthetic"] + steps["real"]
    assert correct.regimes["real+synthetic"].n_train == 2 * correct.regimes["real"].n_train
    assert correct.settings["bootstrap"]["unit"] == "patient"
    assert correct.settings["n_holdout_patients"] == 20


def test_labels_that_carry_no_information_give_chance_auc(correct, shuffled):
    # Over four toy seeds: synthetic-only AUC 0.26-0.52 (a small classifier still latches on to
    # chance patterns of 80 images), ratio's upper end 0.36-0.64; correct labels: lower end >= 0.88
    syn = shuffled.regimes["synthetic"].macro_auc
    assert 0.2 < syn.value < 0.8
    assert shuffled.tstr_trtr.high < 0.75 < correct.tstr_trtr.low
    # real data still teaches the other regimes: the real ones are untouched, same seed
    assert shuffled.regimes["real"].macro_auc == correct.regimes["real"].macro_auc
    assert shuffled.regimes["synthetic->real"].macro_auc.value > 0.8


def test_json_is_plain_and_roc_curves_run_corner_to_corner(correct):
    j = json.loads(json.dumps(correct.to_json(), allow_nan=False))
    assert j["regimes"]["synthetic"]["per_label_auc"].keys() == set(LABELS)
    assert j["settings"]["config"]["steps"] == 60 and j["tstr_trtr"]["value"] > 0.9
    for curves in correct.roc.values():
        for fpr, tpr in curves.values():
            assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
            assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    # the area under the returned curve is the AUC (trapezoid = Mann-Whitney with ties at 1/2)
    fpr, tpr = correct.roc["real"]["Mass"]
    assert np.trapezoid(tpr, fpr) == pytest.approx(correct.regimes["real"].per_label["Mass"], abs=1e-5)


def test_roc_curve_ties_and_thinning():
    fpr, tpr = roc_curve(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 0]))
    assert fpr == [0.0, 0.0, 0.5, 1.0] and tpr == [0.0, 0.5, 1.0, 1.0]
    rng = np.random.default_rng(0)
    f, t = roc_curve(rng.random(5000), rng.random(5000) < 0.3, max_points=50)
    assert len(f) <= 50 and (f[0], f[-1]) == (0.0, 1.0)


def test_seeded_labels_missing_are_named_and_bad_input_refused(toy):
    xr, yr, xh, yh, ph, xs, ys = toy
    tiny = CFG.model_copy(update={"steps": 4, "n_bootstrap": 20})
    ys_no_mass = ys.copy()
    ys_no_mass[:, 1] = 0
    a = utility(xr, yr, xs, ys_no_mass, xh, yh, LABELS, config=tiny, seed=5, holdout_patients=ph)
    b = utility(xr, yr, xs, ys_no_mass, xh, yh, LABELS, config=tiny, seed=5, holdout_patients=ph)
    assert a.to_json() == b.to_json()
    assert a.macro_labels == ["Effusion"] and "synthetic" in a.not_evaluable["Mass"]
    assert a.regimes["synthetic"].per_label["Mass"] is None
    assert a.regimes["real"].per_label["Mass"] is not None  # real can still score it
    c = utility(xr, yr, xs, ys_no_mass, xh, yh, LABELS, config=tiny, seed=6, holdout_patients=ph)
    assert c.to_json() != a.to_json()
    # a label no holdout image carries: nothing to score, said so, no made-up ratio
    yh0 = np.zeros_like(yh)
    d = utility(xr, yr, xs, ys, xh, yh0, LABELS, config=tiny, seed=5)
    assert d.macro_labels == [] and d.tstr_trtr is None and "holdout" in d.not_evaluable["Effusion"]
    assert d.note and d.settings["bootstrap"]["unit"].startswith("image")
    assert json.dumps(d.to_json(), allow_nan=False)
    with pytest.raises(InputError, match="labels of shape"):
        utility(xr, yr[:, :1], xs, ys, xh, yh, LABELS, config=tiny)
    with pytest.raises(InputError, match="shapes differ"):
        utility(xr, yr, xs[:, :20, :20], ys, xh, yh, LABELS, config=tiny)
    with pytest.raises(InputError, match="NaN"):
        utility(xr, yr, np.full_like(xs, np.nan), ys, xh, yh, LABELS, config=tiny)
    # a channel axis of length one is read like none
    e = utility(xr[:, None], yr, xs[:, None], ys_no_mass, xh[:, None], yh, LABELS, config=tiny, seed=5,
                holdout_patients=ph)
    assert e.to_json() == a.to_json()
