"""Must-show 1 of issue 13: each fidelity / diversity metric on cases with known answers.

A fresh real sample must land at the real-versus-real floor; blurred, noised and mode-collapsed
sets must rank worse, in the expected direction. Feature vectors come from known Gaussians, images
from the CXR phantoms (synthmed.phantoms.cxr), so every case is cheap and its answer is known.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from synthmed.evaluate.diversity import diversity, ms_ssim_settings, pairwise_ms_ssim, random_pairs
from synthmed.evaluate.fidelity import frechet_distance
from synthmed.evaluate.floor import real_floor
from synthmed.evaluate.groups import group_masks, per_group
from synthmed.evaluate.prdc import knn_radii, prdc
from synthmed.evaluate.slices import plane_slices, slicewise_diversity, slicewise_features
from synthmed.phantoms import cxr
from synthmed.phantoms.findings import Findings


# ------------------------------------------------------------------ fixtures
def _phantoms(seed: int, patients: int, studies: int = 1, size: int = 64):
    """(images in [0, 1], patient keys): `studies` radiographs per phantom patient."""
    rng = np.random.default_rng(seed)
    imgs, keys = [], []
    for p in range(patients):
        sex = "F" if p % 2 else "M"
        age = float(rng.uniform(30, 80))
        anat = cxr.sample_anatomy(rng, age, sex)
        detail = cxr.build_detail(rng, anat, age, size)
        for _ in range(studies):
            imgs.append(cxr.render(anat, detail, cxr.sample_study(rng), Findings(), size, rng))
            keys.append(p)
    x = np.stack(imgs).astype(np.float32)
    return x / 4095.0, np.asarray(keys)


@pytest.fixture(scope="module")
def cxr_sets():
    # drawn alike (two studies per patient), so the fresh set's make-up matches the floor's
    train, _ = _phantoms(1, 35, studies=2)
    holdout, hold_pat = _phantoms(2, 30, studies=2)
    fresh, _ = _phantoms(3, 30, studies=2)
    return train, holdout, hold_pat, fresh


def _features(images: np.ndarray) -> np.ndarray:
    """A fixed feature map whose response to blur and noise is known: 4x4 block means of the image
    and of |Laplacian| (fine detail), 32 numbers. The product uses the audit's trained encoder;
    this test checks the metric, so it needs a feature map it can reason about."""
    x = np.asarray(images, np.float64)
    lap = np.abs(np.stack([ndimage.laplace(im) for im in x]))
    n, h, w = x.shape

    def blocks(a):
        return a.reshape(n, 4, h // 4, 4, w // 4).mean((2, 4)).reshape(n, -1)

    return np.concatenate([blocks(x), 10 * blocks(lap)], axis=1)


def _blur(x, sigma):
    return np.stack([ndimage.gaussian_filter(im, sigma) for im in x]).astype(np.float32)


def _noise(x, sd, seed=0):
    return np.clip(x + np.random.default_rng(seed).normal(0, sd, x.shape), 0, 1).astype(np.float32)


def _collapse(x, modes=3, seed=0):
    """Mode collapse: every image is one of `modes` images (of different patients), with imperceptible noise."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, modes, x.shape[0])
    return _noise(x[:2 * modes:2][pick], 0.002, seed)  # distinct patients (two studies each)


def _at_floor(iv, x, widen=1.7):
    """x within the floor's 95 % interval widened to ~3.3 sd (1.7 x): several metrics are checked
    at once, so each needs a per-metric miss rate well under 5 % to hold on every seed (the
    largest distance over 12 seeds of the PRDC case was 1.31 half-widths)."""
    centre, half = (iv.low + iv.high) / 2, (iv.high - iv.low) / 2
    return abs(x - centre) <= widen * half


# ------------------------------------------------------------------ Fréchet distance
def test_frechet_distance_floor_and_ranking(cxr_sets):
    train, holdout, hold_pat, fresh = cxr_sets
    f_tr = _features(train)

    def fd(ref, cand):
        return frechet_distance(_features(ref) if ref.ndim == 3 else ref, _features(cand))

    floor = real_floor(fd, f_tr, holdout, hold_pat, n_boot=20, seed=0)["value"]
    fresh_fd = fd(f_tr, fresh)
    assert _at_floor(floor, fresh_fd), (fresh_fd, floor)
    # blur removes fine detail: the distance grows with the blur, and every blurred set is past the floor
    blurred = [fd(f_tr, _blur(fresh, s)) for s in (0.7, 1.2, 2.0)]
    assert floor.high < blurred[0] < blurred[1] < blurred[2], (floor, blurred)
    noised = [fd(f_tr, _noise(fresh, sd)) for sd in (0.03, 0.08)]
    assert floor.high < noised[0] < noised[1], (floor, noised)
    # a collapsed set has the right images but no spread: its covariance term alone exceeds the floor
    assert fd(f_tr, _collapse(fresh)) > floor.high


# ------------------------------------------------------------------ PRDC
def _prdc_reference(r, f, k):
    """The formulas of Naeem et al. 2020 written out on the full distance matrices."""
    rr, ff, rf = cdist(r, r), cdist(f, f), cdist(r, f)
    r_rad = np.sort(rr, 1)[:, k]
    f_rad = np.sort(ff, 1)[:, k]
    inside = rf <= r_rad[:, None]
    return dict(precision=inside.any(0).mean(), recall=(rf <= f_rad[None, :]).any(1).mean(),
                density=inside.sum() / (k * f.shape[0]), coverage=(rf.min(1) <= r_rad).mean())


def test_prdc_on_images_fresh_at_floor_blurred_worse_in_order(cxr_sets):
    # the Gaussian case below checks noise, collapse and truncation; this one the image
    # degradation a generator shows most: blur, at three strengths, in the feature map of the
    # Fréchet test
    train, holdout, hold_pat, fresh = cxr_sets
    f_tr = _features(train)

    def pr(ref, cand):
        return prdc(ref, _features(cand), k=5)

    floor = real_floor(pr, f_tr, holdout, hold_pat, n_boot=20, seed=0, replace=False, fraction=0.5)
    m = floor.size
    got = pr(f_tr, fresh[:m])
    for key in ("recall", "density", "coverage"):
        assert _at_floor(floor[key], getattr(got, key)), (key, getattr(got, key), floor[key])
    # at 30 images against 70 every real replicate has precision 1 (a zero-width floor): a fresh
    # real set must come close, not inside
    assert floor["precision"].low == 1.0 and got.precision >= 0.9
    # this feature map reads fine detail (|Laplacian|), so blur pushes a set off the real manifold
    # fast: at sigma 0.5 px most of it, from 0.7 px all of it
    blurred = [pr(f_tr, _blur(fresh[:m], s)) for s in (0.5, 0.7, 1.2)]
    for key in ("precision", "density", "recall", "coverage"):
        vals = [getattr(b, key) for b in blurred]
        assert floor[key].low > vals[0] > vals[1] >= vals[2], (key, vals, floor[key])


def test_prdc_matches_the_published_formulas_across_chunks():
    rng = np.random.default_rng(0)
    r, f = rng.normal(size=(1100, 3)), rng.normal(0.3, 1.2, size=(300, 3))  # > one 1024-row chunk
    got = prdc(r, f, k=4).as_dict()
    for key, want in _prdc_reference(r, f, 4).items():
        assert got[key] == pytest.approx(want, abs=1e-12), key
    # k-th neighbour excludes the point itself: on a line 0, 1, 3 the 1st neighbours are at 1, 1, 2
    assert knn_radii(np.array([[0.0], [1.0], [3.0]]), 1).tolist() == [1.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="needs more than"):
        prdc(r[:4], f, k=5)


def test_prdc_floor_and_ranking():
    rng = np.random.default_rng(1)
    d = 16
    train = rng.normal(size=(600, d))
    holdout = rng.normal(size=(600, d))
    patients = np.repeat(np.arange(300), 2)  # two rows per patient: resampled together
    floor = real_floor(lambda a, b: prdc(a, b, k=5), train, holdout, patients,
                       n_boot=20, seed=0, replace=False, fraction=0.5)
    m = floor.size
    fresh = prdc(train, rng.normal(size=(m, d)), k=5)
    for key in ("precision", "recall", "density", "coverage"):
        assert _at_floor(floor[key], getattr(fresh, key)), (key, getattr(fresh, key), floor[key])
    # noise: real points pushed off the manifold -> fewer inside real balls (precision, density)
    noised = prdc(train, rng.normal(size=(m, d)) + rng.normal(0, 0.8, size=(m, d)), k=5)
    assert noised.precision < floor["precision"].low - 0.1
    assert noised.density < floor["density"].low - 0.1
    # mode collapse: a few real modes with tiny jitter -> precise, but little of the real set is covered
    centres = rng.normal(size=(5, d))
    collapsed = prdc(train, centres[rng.integers(0, 5, m)] + rng.normal(0, 0.05, (m, d)), k=5)
    assert collapsed.recall < floor["recall"].low - 0.3
    assert collapsed.coverage < floor["coverage"].low - 0.3
    # narrower than real (truncation): still precise, less recall; order follows the width. (Not
    # coverage: in 16-d the outer real points have wide balls, and a narrower set still reaches them.)
    narrow = [prdc(train, s * rng.normal(size=(m, d)), k=5) for s in (0.8, 0.5)]
    assert floor["recall"].low > narrow[0].recall > narrow[1].recall
    assert min(n.precision for n in narrow) >= floor["precision"].low


# ------------------------------------------------------------------ MS-SSIM diversity
def test_ms_ssim_settings_fit_the_image():
    s64 = ms_ssim_settings((64, 64))
    assert (s64.scales, s64.kernel_size) == (3, 7)
    assert 64 / 2 ** (s64.scales - 1) >= 2 * s64.kernel_size
    assert ms_ssim_settings((256, 256)).scales == 5
    assert sum(s64.weights) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="smaller than"):
        ms_ssim_settings((5, 5))
    i, j = random_pairs(10, 1000, seed=3)
    assert (i != j).all() and set(np.unique(j)) == set(range(10))
    assert np.array_equal(random_pairs(10, 50, 4)[0], random_pairs(10, 50, 4)[0])


def test_ms_ssim_diversity_floor_and_ranking(cxr_sets):
    train, holdout, hold_pat, fresh = cxr_sets
    # an image with itself scores 1, and blurring it moves it away monotonically
    same = pairwise_ms_ssim(fresh[:4], fresh[:4])
    assert np.allclose(same, 1.0, atol=1e-5)
    to_blur = [pairwise_ms_ssim(fresh[:8], _blur(fresh[:8], s)).mean() for s in (0.7, 1.5)]
    assert 1.0 > to_blur[0] > to_blur[1]

    def div(_ref, cand):
        return diversity(cand, n_pairs=150, seed=0)

    floor = real_floor(div, train, holdout, hold_pat, n_boot=12, seed=0, replace=False,
                       fraction=0.5)["ms_ssim"]
    assert floor_size(holdout, hold_pat) == 30
    fresh_div = diversity(fresh[:30], n_pairs=150, seed=0).ms_ssim  # 15 patients, like a replicate
    assert _at_floor(floor, fresh_div), (fresh_div, floor)
    # mode collapse: more alike than real patients are, and the fewer the modes the more alike
    # (a pair from one mode scores ~1, other pairs as real ones: 2 modes ~ (1 + floor) / 2)
    collapsed = [diversity(_collapse(fresh, modes), n_pairs=150, seed=0).ms_ssim for modes in (2, 1)]
    assert floor.high + 0.04 < collapsed[0] < collapsed[1]
    assert collapsed[1] > 0.99
    # blur removes what tells patients apart: a blurred set is more alike than real patients are
    blurred = [diversity(_blur(fresh, s), n_pairs=150, seed=0).ms_ssim for s in (1.2, 2.5)]
    assert floor.high < blurred[0] < blurred[1], (floor, blurred)
    # noise destroys shared structure: pairs look less alike (this is why MS-SSIM is read beside precision)
    assert diversity(_noise(fresh, 0.1), n_pairs=150, seed=0).ms_ssim < floor.low
    # same set and seed, same number
    assert diversity(fresh, 50, seed=5) == diversity(fresh, 50, seed=5)


def floor_size(holdout, patients):
    """Rows in a half-of-the-patients replicate (two studies per holdout patient)."""
    return int(round(0.5 * len(np.unique(patients)))) * (holdout.shape[0] // len(np.unique(patients)))


# ------------------------------------------------------------------ floor, groups, 2.5D
def test_real_floor_resamples_patients_not_rows():
    seen = []

    def metric(_ref, cand):
        seen.append(cand.copy())
        return float(cand.mean())

    cand = np.repeat(np.arange(10.0), 3)  # patient p has three rows of value p
    fl = real_floor(metric, np.zeros(1), cand, np.repeat(np.arange(10), 3), n_boot=5, seed=1)
    assert fl["value"].value == pytest.approx(4.5)
    for draw in seen[1:]:
        assert draw.size == 30 and all((draw == v).sum() % 3 == 0 for v in np.unique(draw))
    sub = real_floor(metric, np.zeros(1), cand, np.repeat(np.arange(10), 3), n_boot=5, seed=1,
                     replace=False, fraction=0.5)
    assert sub.size == 15
    assert all(len(np.unique(d)) == 5 for d in seen[-5:])
    with pytest.raises(ValueError, match="fraction < 1"):
        real_floor(metric, np.zeros(1), cand, replace=False)


def test_per_condition_prdc_finds_the_collapsed_condition():
    rng = np.random.default_rng(2)
    d, n = 8, 300
    # two conditions in different places; the synthetic cohort is right for A, collapsed for B
    real = np.concatenate([rng.normal(0, 1, (n, d)), rng.normal(4, 1, (n, d))])
    real_lab = np.array(["A"] * n + ["B"] * n)
    synth = np.concatenate([rng.normal(0, 1, (n, d)), 4 + rng.normal(0, 0.05, (n, d)) + rng.normal(0, 1, d)])
    res = per_group(lambda a, b: prdc(a, b, k=5), real, real_lab, synth, real_lab.copy())
    assert res["A"].result.coverage > 0.85
    assert res["B"].result.coverage < 0.2
    # multi-hot labels with a 'No Finding' group; a group missing on one side is reported, not dropped
    masks = group_masks(np.array([[1, 0], [0, 0], [1, 1]]), ["x", "y"], none_label="No Finding")
    assert {k: v.tolist() for k, v in masks.items()} == {"x": [True, False, True], "y": [False, False, True],
                                                         "No Finding": [False, True, False]}
    res = per_group(lambda a, b: prdc(a, b, k=5), real, real_lab, synth[:n], real_lab[:n])
    assert res["B"].result is None and "too few" in res["B"].skipped


def test_slicewise_metrics_for_volumes():
    rng = np.random.default_rng(4)
    base = ndimage.gaussian_filter(rng.random((40, 24, 32, 32)), (0, 3, 3, 3))
    vols = ((base - base.min()) / np.ptp(base)).astype(np.float32)
    s = plane_slices(vols, 1, per_axis=3)
    assert s.shape == (40, 3, 24, 32)
    feats = slicewise_features(vols, lambda im: im.reshape(im.shape[0], -1)[:, :4], per_axis=2)
    assert feats.shape == (40, 3 * 2 * 4)
    # the features of one volume are those of its own slices, in plane order
    first = int(round(0.2 * (vols.shape[1] - 1)))  # the first axial slice kept, past the 20 % margin
    assert np.allclose(feats[7, :4], vols[7, first].ravel()[:4])
    real = slicewise_diversity(vols, n_pairs=40, seed=0)
    collapsed = slicewise_diversity(np.repeat(vols[:2], 20, 0), n_pairs=40, seed=0)
    assert real.settings.scales == ms_ssim_settings((24, 32)).scales
    assert collapsed.ms_ssim > real.ms_ssim + 0.2


# ------------------------------------------------------------------ one call for a cohort
def test_fidelity_diversity_reads_every_metric_beside_its_floor(cxr_sets):
    from synthmed.evaluate.cohort_metrics import fidelity_diversity

    train, holdout, hold_pat, fresh = cxr_sets
    labels = lambda x: np.arange(x.shape[0]) % 2  # two 'conditions', alternating images
    kw = dict(embed=_features, holdout_patients=hold_pat, n_pairs=100, n_boot=8, seed=0,
              train_labels=labels(train), holdout_labels=labels(holdout), min_group=20)
    real = fidelity_diversity(train, holdout, fresh, synthetic_labels=labels(fresh), **kw)
    blurred = fidelity_diversity(train, holdout, _blur(fresh, 1.5), synthetic_labels=labels(fresh), **kw)
    assert real.frechet.synthetic["value"] < real.frechet.floor["value"].high < blurred.frechet.synthetic["value"]
    assert blurred.prdc.synthetic["precision"] < real.prdc.floor["precision"].low
    assert real.prdc.floor.size == 30 and real.ms_ssim.floor.size == 30
    assert set(real.by_condition) == {"0", "1"}
    # 30 images per condition: enough to score, each with its own floor
    assert all(not isinstance(v, str) for v in real.by_condition.values())
    assert blurred.by_condition["1"].frechet.synthetic["value"] > real.by_condition["1"].frechet.floor["value"].high
    few = fidelity_diversity(train, holdout, fresh, synthetic_labels=labels(fresh), **(kw | {"min_group": 40}))
    assert "too few" in few.by_condition["0"]
