"""Evaluation tools: classifier, distances, grids, label-rate check."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from synthmed.errors import InputError
from synthmed.evaluate import (LabelClassifier, assignment_test, calibrate_threshold,
                               frechet_distance, gaussian_frechet, histogram_w1, label_rate, pixel_distances,
                               save_grid, tile)
from synthmed.evaluate.conditioning import NO_FINDING, contrast_test
from synthmed.stats import clopper_pearson, roc_auc_of_labels
from synthmed.viz import middle_slices


# ---------------------------------------------------------------- fidelity
def test_histogram_w1_point_masses():
    # All mass at bin centre 0.25 vs all at 0.75 (4 bins on [0,1]): W1 = 0.5 exactly.
    a = np.full((3, 4, 4), 0.125 + 0.125)
    b = np.full((2, 4, 4), 0.625 + 0.125)
    assert histogram_w1(a, b, bins=4) == pytest.approx(0.5)
    # Half the mass moved by 0.5 -> 0.25.
    c = np.concatenate([np.full(8, 0.25), np.full(8, 0.75)])
    assert histogram_w1(a.ravel()[:16], c, bins=4) == pytest.approx(0.25)
    assert histogram_w1(a, a, bins=4) == 0.0


def test_gaussian_frechet_closed_forms():
    # 1D: (m1-m2)^2 + (s1-s2)^2 with s the standard deviations.
    assert gaussian_frechet(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[1.0]])) \
        == pytest.approx(4.0 + 1.0)
    # Diagonal covariances: sum over dims of (sqrt(a)-sqrt(b))^2 plus the mean term.
    s1, s2 = np.diag([1.0, 9.0, 4.0]), np.diag([4.0, 1.0, 4.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, 2.0])
    expected = 1.0 + 4.0 + (1 - 2) ** 2 + (3 - 1) ** 2 + 0.0
    assert gaussian_frechet(mu1, s1, mu2, s2) == pytest.approx(expected)


def test_frechet_distance_zero_for_identical_and_grows_with_shift():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(500, 8))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    shifted = frechet_distance(f, f + 2.0)
    assert shifted == pytest.approx(8 * 4.0, rel=1e-6)  # only the mean term: 8 dims * 2^2
    with pytest.raises(ValueError):
        frechet_distance(f, f[:, :4])


def test_pixel_distances_hand_values():
    real = np.zeros((4, 2, 2))
    real[2:] = 1.0  # two black, two white images
    synth = np.full((3, 2, 2), 0.5)
    d = pixel_distances(real, synth)
    assert d["mean_abs_diff"] == pytest.approx(0.0)
    assert d["std_abs_diff"] == pytest.approx(0.5)
    assert d["image_mean_w1"] == pytest.approx(0.5)   # {0,0,1,1} vs {.5,.5,.5}
    assert d["image_std_w1"] == pytest.approx(0.0)    # every image is flat in both sets
    assert d["intensity_w1"] == pytest.approx(0.5, abs=1 / 256)
    assert d["mean_image_rmse"] == pytest.approx(0.0)
    same = pixel_distances(real, real.copy())
    assert all(v == pytest.approx(0.0) for v in same.values())


# ---------------------------------------------------------------- grid
def test_grid_png_size_2d_and_3d(tmp_path):
    imgs = np.random.default_rng(0).random((5, 8, 6)).astype(np.float32)
    p = save_grid(imgs, tmp_path / "g.png", ncol=3, pad=1)
    with Image.open(p) as im:
        assert im.mode == "L"
        assert im.size == (3 * (6 + 1) + 1, 2 * (8 + 1) + 1)  # (width, height)
        px = np.asarray(im)
    # The first tile is the first image, scaled to 8 bits.
    assert np.array_equal(px[1:9, 1:7], np.round(imgs[0] * 255).astype(np.uint8))
    vols = np.zeros((2, 4, 6, 5), np.float32)
    vols[:, 2, :, :] = 1.0  # the middle axial slice is white
    sheet = tile(vols, ncol=2, pad=0)
    assert sheet.shape == (6, 2 * 3 * 6)
    strip = middle_slices(vols[0])
    assert strip[:, :6].max() == 1.0 and strip.shape == (6, 18)
    p3 = save_grid(vols, tmp_path / "v.png", scale=2, pad=0, ncol=1)
    with Image.open(p3) as im:
        assert im.size == (18 * 2, 12 * 2)


# ---------------------------------------------------------------- classifier + label rate
def _toy(n: int, seed: int):
    """Label A = bright square top-left, label B = bright square bottom-right, independent."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 2)) < 0.4).astype(np.float32)
    x = rng.normal(0.3, 0.05, size=(n, 16, 16)).astype(np.float32)
    x[y[:, 0] == 1, 2:7, 2:7] += 0.4
    x[y[:, 1] == 1, 9:14, 9:14] += 0.4
    return np.clip(x, 0, 1), y


def test_classifier_learns_separable_task_and_round_trips(tmp_path):
    """A trained classifier separates the toy findings; an untrained one does not reach the bar.

    Spread over classifier seeds 0-7 with data seeds 10*s, 10*s+1, 10*s+2 (a /tmp script calling
    this body, 2-core CPU, torch 2.13.0): trained AUC A and B 1.000 on all 8; label rate 1.000,
    sample AUC 1.000, contrast p < 1e-34, noise never above chance on all 8. The untrained
    network's mean AUC is not near 0.5 but anywhere in 0.019-0.909 (random features can
    correlate with brightness either way), so the bound is < 0.95, the bar the trained one must
    clear on each label, not < 0.9 (seed 7 gives 0.909).
    """
    x, y = _toy(256, 0)
    xt, yt = _toy(128, 1)
    clf = LabelClassifier(2, (16, 16), ["A", "B"], channels=(8, 16), seed=0)
    untrained = clf.score(xt, yt)["mean_auc"]
    clf.fit(x, y, epochs=8, batch_size=32, lr=5e-3)
    s = clf.score(xt, yt)
    assert s["A"] > 0.95 and s["B"] > 0.95, s
    assert untrained < 0.95
    feats = clf.features(xt)
    assert feats.shape == (128, 16) and np.isfinite(feats).all()
    path = clf.save(tmp_path / "clf.safetensors")
    back = LabelClassifier.load(path)
    np.testing.assert_allclose(back.predict_proba(xt), clf.predict_proba(xt), atol=1e-6)
    assert back.labels == ["A", "B"]

    # Label rate: 'samples' that truly carry A are flagged far above chance; pure noise is not.
    rate = label_rate(clf, "A", xt[yt[:, 0] == 1], real_images=xt, real_targets=yt,
                      contrast_samples=xt[yt[:, 0] == 0])
    assert rate.above_chance and rate.rate > 0.9 and rate.sample_auc > 0.95
    assert rate.contrast_p_value < 1e-6
    assert rate.chance_rate == pytest.approx(rate.base_rate, abs=0.02)
    noise = _toy(64, 2)[0] * 0 + 0.3
    none = label_rate(clf, "A", noise, real_images=xt, real_targets=yt)
    assert not none.above_chance


def test_assignment_test_names_the_conditioned_finding_and_has_exact_chance():
    """Spread over classifier seeds 0-7 (data seeds 10*s, 10*s+1, 10*s+2; shuffle seed 3+s; same
    script as above): accuracy on conditioned samples 0.950-1.000 (bound > 0.9), p 0.0005 (the
    permutation floor, bound < 0.001), accuracy on the real calibration images 0.929-1.000
    (bound > 0.9); shuffled conditions |accuracy - chance| 0.008-0.058 (bound < 0.15), p
    0.24-0.92 (bound > 0.01); all-A samples p 0.71-1.00 (bound > 0.4). Every bound held on all 8.
    """
    x, y = _toy(256, 0)
    clf = LabelClassifier(2, (16, 16), ["A", "B"], channels=(8, 16), seed=0)
    clf.fit(x, y, epochs=8, batch_size=32, lr=5e-3)
    xt, yt = _toy(400, 1)
    only_a = xt[(yt[:, 0] == 1) & (yt[:, 1] == 0)][:40]
    only_b = xt[(yt[:, 0] == 0) & (yt[:, 1] == 1)][:40]
    neither = xt[yt.sum(1) == 0][:40]
    calib_x, calib_y = _toy(200, 2)

    # Samples that carry their condition: nearly all assigned right, far above 1/3 chance.
    good = assignment_test(clf, {"A": only_a, "B": only_b, NO_FINDING: neither},
                           real_images=calib_x, real_targets=calib_y, n_permutations=2000)
    assert good.chance == pytest.approx(1 / 3, abs=0.02)
    assert good.accuracy > 0.9 and good.p_value < 0.001
    assert np.trace(np.array(good.confusion)) == good.correct and good.n == 120
    # The instrument itself is checked on the real images: single-class ones are named too.
    assert good.real_accuracy > 0.9 and good.real_n == int(((calib_y.sum(1) <= 1)).sum())

    # Conditions shuffled across the same images: at chance, not significant.
    pool = np.concatenate([only_a, only_b, neither])
    perm = np.random.default_rng(3).permutation(pool.shape[0])
    shuffled = {"A": pool[perm[:40]], "B": pool[perm[40:80]], NO_FINDING: pool[perm[80:]]}
    bad = assignment_test(clf, shuffled, real_images=calib_x, real_targets=calib_y,
                          n_permutations=2000)
    assert abs(bad.accuracy - bad.chance) < 0.15 and bad.p_value > 0.01

    # Chance follows the classifier's bias: if everything is read as A, balanced conditions
    # still give exactly 1/2, and a 100 % hit rate on A is not evidence.
    biased = assignment_test(clf, {"A": only_a, "B": only_a}, real_images=calib_x,
                             real_targets=calib_y, n_permutations=2000)
    assert biased.chance == pytest.approx(0.5) and biased.p_value > 0.4
    with pytest.raises(ValueError, match="not outputs"):
        assignment_test(clf, {"A": only_a, "C": only_b}, real_images=calib_x, real_targets=calib_y)


def test_classifier_rejects_wrong_shapes(tmp_path):
    clf = LabelClassifier(3, (4, 8, 8), ["A"], channels=(4,))
    assert clf.predict_proba(np.zeros((2, 4, 8, 8))).shape == (2, 1)
    with pytest.raises(InputError, match="do not match"):
        clf.predict_proba(np.zeros((2, 8, 8)))
    with pytest.raises(InputError, match="targets"):
        clf.fit(np.zeros((4, 4, 8, 8)), np.zeros((4, 2)))
    (tmp_path / "bad.safetensors").write_bytes(b"not weights")
    with pytest.raises(InputError, match="not a synthmed label classifier"):
        LabelClassifier.load(tmp_path / "bad.safetensors")


def test_stats_helpers():
    assert roc_auc_of_labels(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0])) == 1.0
    assert roc_auc_of_labels(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5
    assert np.isnan(roc_auc_of_labels(np.array([0.5, 0.7]), np.array([1, 1])))  # one class: no AUC
    lo, hi = clopper_pearson(5, 10)
    # Clopper-Pearson 95% for 5/10 (tabulated): 0.1871, 0.8129.
    assert lo == pytest.approx(0.1871, abs=1e-4) and hi == pytest.approx(0.8129, abs=1e-4)
    assert calibrate_threshold(np.arange(100) / 100, 0.1) == pytest.approx(0.891)
    # Fisher exact, one-sided: 3/3 vs 0/3 has p = 1 / C(6, 3) = 0.05; equal rates give p > 0.5.
    assert contrast_test(3, 3, 0, 3) == pytest.approx(0.05)
    assert contrast_test(5, 10, 5, 10) > 0.5
