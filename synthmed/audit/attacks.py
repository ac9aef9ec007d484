"""Membership-inference attacks that need only the synthetic images (no access to the model).

Each attack scores candidate real records: higher = "more likely in the training set". Scores are
per image; `aggregate_by_patient` turns them into one score per patient (a patient is a member if
ANY of their images was trained on, so the default is the MAX over the patient's images), and
`synthmed.audit.stats` turns member vs non-member patient scores into AUC, TPR at low FPR, epsilon.

Calibration data. Two attacks need "what does the population look like without training
membership": a REFERENCE set of real non-member images. It must not contain any patient whose
scores are then evaluated, or the attack is judged on the data it was fitted on (a non-member in
the reference set sits at distance 0 from it and looks artificially un-member-like). Use the
dataset's reference split when it exists; otherwise split the holdout patients in two with
`split_calibration` (by patient, seeded): one half calibrates, the other is the evaluated
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

from synthmed.audit.neighbours import cpu_threads, nearest
from synthmed.audit.stats import auc_bootstrap_ci, empirical_epsilon, roc_auc, tpr_at_fpr


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


def aggregate_by_patient(scores: np.ndarray, patient_ids: np.ndarray, how: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique patient ids, one score each): max (default: a patient is a member if ANY
    image is) or mean of the patient's image scores."""
    scores = np.asarray(scores, dtype=np.float64)
    ids = np.asarray(patient_ids)
    if scores.shape[0] != ids.shape[0]:
        raise ValueError(f"{scores.shape[0]} scores but {ids.shape[0]} patient ids")
    uniq, inv = np.unique(ids, return_inverse=True)
    if how == "max":
        out = np.full(uniq.size, -np.inf)
        np.maximum.at(out, inv, scores)
    elif how == "mean":
        out = np.bincount(inv, weights=scores, minlength=uniq.size) / np.bincount(inv, minlength=uniq.size)
    else:
        raise ValueError(f"unknown aggregation {how!r}; use 'max' or 'mean'")
    return uniq, out


def split_calibration(patient_ids: np.ndarray, fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split records into (calibration mask, evaluation mask) BY PATIENT: no patient on both sides."""
    ids = np.asarray(patient_ids)
    uniq = np.unique(ids)
    if uniq.size < 2:
        raise ValueError("need at least 2 patients to split into calibration and evaluation")
    rng = np.random.default_rng(seed)
    n_cal = min(uniq.size - 1, max(1, int(round(fraction * uniq.size))))
    cal = set(rng.permutation(uniq)[:n_cal].tolist())
    mask = np.array([p in cal for p in ids])
    return mask, ~mask


def summarise_attack(member_scores: np.ndarray, nonmember_scores: np.ndarray, *, n_boot: int = 1000,
                     alpha: float = 0.05, seed: int = 0, fprs: tuple[float, ...] = (0.01, 0.001)) -> dict[str, Any]:
    """AUC with bootstrap CI, TPR at each FPR with exact intervals and epsilon lower bounds."""
    rates = [tpr_at_fpr(member_scores, nonmember_scores, f, alpha) for f in fprs]
    return {
        "auc": roc_auc(member_scores, nonmember_scores),
        "auc_ci": list(auc_bootstrap_ci(member_scores, nonmember_scores, n_boot, alpha, seed)),
        "n_members": int(np.size(member_scores)), "n_nonmembers": int(np.size(nonmember_scores)),
        "tpr_at_fpr": [r.to_dict() | {"epsilon_lower_bound": empirical_epsilon(r.tpr_ci[0], r.fpr_ci[1])}
                       for r in rates],
    }
