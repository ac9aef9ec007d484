"""Membership-inference attacks that need only the synthetic images (no access to the model).

Each attack scores candidate real records: higher = "more likely in the training set". Scores are
per image; `attacks.measure.aggregate_by_patient` turns them into one score per patient (a patient
is a member if ANY of their images was trained on, so the default is the MAX over the patient's
images), and `synthmed.audit.stats` turns member vs non-member patient scores into AUC, TPR at low
FPR, epsilon. The scoring functions work on plain arrays; the classes at the end put them on the
audit's attack interface (`attacks.base`), one per attack, registered by name.

Calibration data. Two attacks need "what does the population look like without training
membership": a REFERENCE set of real non-member images. It must not contain any patient whose
scores are then evaluated, or the attack is judged on the data it was fitted on (a non-member in
the reference set sits at distance 0 from it and looks artificially un-member-like). Use the
dataset's reference split when it exists; otherwise split the holdout patients in two with
`attacks.measure.split_calibration` (by patient, seeded): one half calibrates, the other is the evaluated
non-members. The members evaluated are the train patients (all of them, or a random subset of the
same size as the evaluated non-members, which the caller chooses).

Attacks:
* `dcr_scores` (distance to closest synthetic record; GAN-Leaks, Chen et al. 2020): -d(x, S).
  With a reference set, calibrated: log d(x, R) - log d(x, S): a record close to the synthetic
  data only because it is a typical image is also close to the reference set and gets no credit.
* `domias_scores` (DOMIAS, van Breugel et al. 2023): log p_S(x) - log p_R(x), the density of the
  synthetic data over that of the reference data at x, in a low-dimensional space: PCA (fitted on
  the reference set) to `n_components` dims, then Gaussian KDE (scipy, Scott's bandwidth) or, with
  method="knn", the k-th nearest neighbour density estimate p ~ k / (n r_k^d), whose log-ratio is
  d (log r_k,R - log r_k,S) + log(n_R / n_S), with k = 1 by default (measured on a toy leaky
  generator: AUC 0.95 at k = 1, 0.68 at k = 2, 0.60 at k = 3: a memorised record is marked by ONE
  synthetic sample right next to it, which a wider neighbourhood averages away). KDE is the
  paper's choice; its cost is n_candidates x n_points kernel evaluations (64 s for 15k candidates
  against 10k points, measured in benchmarks/results_audit.md), so "auto" uses kNN (faiss, ~1 s)
  above 2,000 points.
* `mc_neighbourhood_scores` (Monte-Carlo set membership, Hilprecht et al. 2019): the fraction of
  synthetic samples within distance eps of x; eps by the median heuristic: the median, over the
  reference records, of their distance to the nearest synthetic sample (so a typical non-member has
  about half a chance to see any synthetic sample in its ball).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthmed.audit.attacks.base import VectorAttack, register_attack
from synthmed.audit.neighbours import cpu_threads, nearest


def _f32(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(a.reshape(a.shape[0], -1))


def dcr_scores(candidates: np.ndarray, synthetic: np.ndarray, reference: np.ndarray | None = None,
               eps: float = 1e-8) -> np.ndarray:
    """-DCR, or with a reference set log d(x, reference) - log d(x, synthetic). Per image."""
    d_s = nearest(candidates, synthetic, k=1)[0][:, 0]
    if reference is None:
        return -d_s
    d_r = nearest(candidates, reference, k=1)[0][:, 0]
    return np.log(d_r + eps) - np.log(d_s + eps)


def _pca(reference: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    mean = reference.mean(0)
    _, _, vt = np.linalg.svd(reference - mean, full_matrices=False)
    return mean, vt[:n_components]


DOMIAS_PCA_DIMS = 5


def domias_scores(candidates: np.ndarray, synthetic: np.ndarray, reference: np.ndarray, *,
                  n_components: int = DOMIAS_PCA_DIMS, method: str = "auto", k: int = 1) -> np.ndarray:
    """log p_synth(x) - log p_reference(x) after PCA to `n_components` dims. Per image."""
    c, s, r = _f32(candidates).astype(np.float64), _f32(synthetic).astype(np.float64), _f32(reference).astype(np.float64)
    if r.shape[0] <= n_components:
        raise ValueError(f"DOMIAS needs more reference records ({r.shape[0]}) than PCA dims ({n_components})")
    mean, comps = _pca(r, min(n_components, r.shape[1]))
    pc, ps, pr = ((x - mean) @ comps.T for x in (c, s, r))
    if method == "auto":
        method = "kde" if max(ps.shape[0], pr.shape[0]) <= 2000 else "knn"
    if method == "kde":
        from scipy.stats import gaussian_kde

        return gaussian_kde(ps.T).logpdf(pc.T) - gaussian_kde(pr.T).logpdf(pc.T)
    if method == "knn":
        dim = pc.shape[1]
        r_s = nearest(pc, ps, k=min(k, len(ps)))[0][:, -1]
        r_r = nearest(pc, pr, k=min(k, len(pr)))[0][:, -1]
        return dim * (np.log(r_r + 1e-12) - np.log(r_s + 1e-12)) + np.log(len(pr) / len(ps))
    raise ValueError(f"unknown DOMIAS method {method!r}; use 'kde', 'knn' or 'auto'")


def median_heuristic_eps(synthetic: np.ndarray, reference: np.ndarray) -> float:
    """Median over reference records of the distance to their nearest synthetic sample."""
    return float(np.median(nearest(reference, synthetic, k=1)[0][:, 0]))


def mc_neighbourhood_scores(candidates: np.ndarray, synthetic: np.ndarray, reference: np.ndarray | None = None,
                            eps: float | None = None) -> np.ndarray:
    """Fraction of synthetic samples within `eps` of each candidate (Hilprecht et al. 2019)."""
    import faiss

    if eps is None:
        if reference is None:
            raise ValueError("give eps, or a reference set to choose it by the median heuristic")
        eps = median_heuristic_eps(synthetic, reference)
    s = _f32(synthetic)
    c = _f32(candidates)
    faiss.omp_set_num_threads(cpu_threads())
    index = faiss.IndexFlatL2(s.shape[1])
    index.add(s)
    lims, dist, _ = index.range_search(c, float(eps) ** 2)
    # faiss's float32 distances may put a sample lying exactly on the rim in or out: immaterial
    # for a Monte-Carlo count
    counts = np.diff(lims)
    return counts.astype(np.float64) / s.shape[0]


# ------------------------------------------------------------------- on the attack interface
@register_attack
class DCR(VectorAttack):
    """Distance to the closest synthetic record, calibrated on the reference when there is one."""

    name = "dcr"
    describe = ("guessing 'in training' when a real image is much closer to a synthetic image than to "
                "any other real image")
    needs = frozenset({"synthetic"})

    @classmethod
    def settings(cls, n_reference: int, n_synthetic: int) -> tuple[dict[str, Any] | None, str]:
        return {}, ""

    @classmethod
    def vector_scores(cls, candidates, synthetic, reference, seed: int = 0, **settings) -> np.ndarray:
        return np.asarray(dcr_scores(candidates, synthetic, reference), dtype=np.float64)


@register_attack
class DOMIAS(VectorAttack):
    name = "domias"
    describe = ("comparing how crowded the synthetic images are around a real image with how "
                "crowded other real images are there")
    needs = frozenset({"synthetic", "reference"})

    @classmethod
    def settings(cls, n_reference: int, n_synthetic: int) -> tuple[dict[str, Any] | None, str]:
        base, note = super().settings(n_reference, n_synthetic)
        if base is None:
            return base, note
        # the PCA is fitted on the reference and each KDE needs more points than dimensions
        default = DOMIAS_PCA_DIMS
        dims = min(default, n_reference - 1, n_synthetic - 1)
        if dims < 1:
            return None, (f"{n_reference} reference and {n_synthetic} synthetic images are too few for "
                          f"a density estimate (at least 2 of each are needed)")
        note = "" if dims == default else (f"PCA reduced to {dims} dims (from {default}): only "
                                           f"{min(n_reference, n_synthetic)} images to estimate a density on")
        return {"n_components": dims}, note

    @classmethod
    def vector_scores(cls, candidates, synthetic, reference, seed: int = 0, **settings) -> np.ndarray:
        return np.asarray(domias_scores(candidates, synthetic, reference, **settings), dtype=np.float64)


@register_attack
class MCNeighbourhood(VectorAttack):
    name = "mc_neighbourhood"
    describe = "counting synthetic images in a small neighbourhood of a real image"
    needs = frozenset({"synthetic", "reference"})

    @classmethod
    def vector_scores(cls, candidates, synthetic, reference, seed: int = 0, **settings) -> np.ndarray:
        return np.asarray(mc_neighbourhood_scores(candidates, synthetic, reference, **settings), dtype=np.float64)
