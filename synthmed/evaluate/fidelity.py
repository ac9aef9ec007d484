"""Distances between two sets of images: how far a synthetic set sits from a real one.

Plain numpy in, plain floats out. Two families:

- pixel statistics, which need no model: global mean / std difference, Wasserstein-1 between
  the intensity histograms, Wasserstein-1 between the per-image mean and per-image std
  distributions, and the RMS difference of the two mean images (spatial layout);
- a Fréchet distance between Gaussians fitted to features of both sets (the FID formula, here
  in the feature space of our own `LabelClassifier`, not a downloaded Inception network, so the
  numbers are comparable only with each other, never with published FIDs).

All distances are 0 for identical sets. Sampling noise makes them positive for two finite draws
of the same distribution, so compare a synthetic set against `real_vs_real` at the same size
(`fidelity_report(..., floor=...)`) before calling a value large.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import linalg
from scipy.stats import wasserstein_distance


def _flat(images: np.ndarray) -> np.ndarray:
    a = np.asarray(images, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError("give a stack of images (N, ...) with N >= 1")
    return a.reshape(a.shape[0], -1)


def histogram_w1(a: np.ndarray, b: np.ndarray, bins: int = 256,
                 value_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """Wasserstein-1 between the intensity histograms of two image sets.

    W1 = integral |F_a(t) - F_b(t)| dt, with F the cumulative histogram on `bins` equal bins over
    `value_range` (values outside are clipped into the end bins): sum over bins of
    |cdf_a - cdf_b| * bin_width. Exact for values on bin centres; otherwise within one bin width.
    """
    lo, hi = value_range
    ha, _ = np.histogram(np.clip(np.asarray(a, np.float64), lo, hi), bins=bins, range=value_range)
    hb, _ = np.histogram(np.clip(np.asarray(b, np.float64), lo, hi), bins=bins, range=value_range)
    ca = np.cumsum(ha) / max(ha.sum(), 1)
    cb = np.cumsum(hb) / max(hb.sum(), 1)
    width = (hi - lo) / bins
    # The last cdf entry is 1 for both, so the sum runs over bin edges 1..bins-1.
    return float(np.abs(ca[:-1] - cb[:-1]).sum() * width)


def gaussian_frechet(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, S1) and N(mu2, S2).

    d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})   (Dowson & Landau 1982; Heusel et al. 2017).
    A tiny ridge is added when the product is singular (fewer images than feature dimensions).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.LinAlgWarning)
        try:
            covmean = linalg.sqrtm(s1 @ s2)
            ok = np.isfinite(covmean).all()
        except (linalg.LinAlgWarning, linalg.LinAlgError):
            ok = False
    if not ok:
        eps = 1e-6 * np.eye(s1.shape[0])
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)  # imaginary parts are round-off for PSD inputs
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted (mean, unbiased covariance) to two feature sets (N, d)."""
    fa, fb = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if fa.ndim != 2 or fb.ndim != 2 or fa.shape[1] != fb.shape[1]:
        raise ValueError(f"feature arrays must be (N, d) with the same d; got {fa.shape} and {fb.shape}")
    if fa.shape[0] < 2 or fb.shape[0] < 2:
        raise ValueError("the Fréchet distance needs at least two feature vectors per set")
    return gaussian_frechet(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False))


def pixel_distances(real: np.ndarray, synth: np.ndarray, bins: int = 256) -> dict[str, float]:
    """Model-free distances between two image sets of the same image shape (values in [0, 1])."""
    ra, sa = _flat(real), _flat(synth)
    if ra.shape[1] != sa.shape[1]:
        raise ValueError(f"image sizes differ: {ra.shape[1]} vs {sa.shape[1]} voxels")
    return {
        "mean_abs_diff": float(abs(ra.mean() - sa.mean())),
        "std_abs_diff": float(abs(ra.std() - sa.std())),
        "intensity_w1": histogram_w1(ra, sa, bins=bins),
        "image_mean_w1": float(wasserstein_distance(ra.mean(1), sa.mean(1))),
        "image_std_w1": float(wasserstein_distance(ra.std(1), sa.std(1))),
        "mean_image_rmse": float(np.sqrt(np.mean((ra.mean(0) - sa.mean(0)) ** 2))),
    }


def fidelity_report(real: np.ndarray, synth: np.ndarray, *, classifier: Any = None) -> dict[str, float]:
    """`pixel_distances` plus, when a classifier is given, `feature_frechet` in its feature space."""
    out = pixel_distances(real, synth)
    if classifier is not None:
        out["feature_frechet"] = frechet_distance(classifier.features(np.asarray(real, np.float32)),
                                                  classifier.features(np.asarray(synth, np.float32)))
    return out


def real_vs_real(real_a: np.ndarray, real_b: np.ndarray, *, classifier: Any = None) -> dict[str, float]:
    """The noise floor: the same distances between two disjoint real sets (e.g. train vs holdout)."""
    return fidelity_report(real_a, real_b, classifier=classifier)
