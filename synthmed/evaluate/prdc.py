"""Precision, recall, density and coverage of a synthetic feature set against a real one.

k-NN manifold estimates (Kynkäänniemi et al. 2019 for precision / recall; Naeem et al. 2020 for
density / coverage), in a feature space trained here (the audit's contrastive encoder, or the
user's local weights), never a downloaded network. With real features R (N, d), synthetic F (M, d)
and r_k(x) the distance from x to its k-th nearest neighbour in its own set (itself excluded):

    precision = 1/M  sum_j  1[ exists i: |F_j - R_i| <= r_k(R_i) ]   (synthetic inside the real manifold)
    recall    = 1/N  sum_i  1[ exists j: |R_i - F_j| <= r_k(F_j) ]   (real inside the synthetic manifold)
    density   = 1/(kM) sum_j sum_i 1[ |F_j - R_i| <= r_k(R_i) ]      (how many real balls hold F_j; ~1 for a match)
    coverage  = 1/N  sum_i  1[ min_j |R_i - F_j| <= r_k(R_i) ]       (real balls that hold a synthetic point)

Fidelity reads from precision and density (noise, artefacts: down), diversity from recall and
coverage (mode collapse: down). The values depend on k and on the set sizes, so compare a
synthetic set with the real-versus-real floor (`synthmed.evaluate.floor`) at the same sizes.

Written here rather than taken from faiss: precision and density compare every pair against a
radius that belongs to the *real* point, which a fixed-radius range search (faiss.range_search)
cannot express, so the full distance matrix is needed anyway; it is computed exactly in float64,
in row chunks (memory O(chunk * N)), with BLAS, which for the few thousand images of a cohort
takes well under a second. The published reference (clovaai/generative-evaluation-prdc) is a
pip package pulling sklearn for the same matrix; this is the same formula without it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

_CHUNK = 1024


@dataclass(frozen=True)
class PRDC:
    precision: float
    recall: float
    density: float
    coverage: float
    k: int
    n_real: int
    n_synthetic: int

    def as_dict(self) -> dict:
        return asdict(self)


def _features(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{what}: give features as an (N, d) array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: features contain NaN or infinity")
    return a


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)), float64; clipped at 0 against round-off."""
    an = np.einsum("nd,nd->n", a, a)[:, None]
    bn = np.einsum("md,md->m", b, b)[None, :]
    return np.sqrt(np.maximum(an + bn - 2.0 * a @ b.T, 0.0))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of `x` to its k-th nearest other row (the row itself excluded)."""
    x = _features(x, "features")
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k must be in [1, {x.shape[0] - 1}] for {x.shape[0]} points, got {k}")
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], _CHUNK):
        d = _pairwise(x[s:s + _CHUNK], x)
        # the row's own distance is 0 and sorts first: the k-th neighbour is at position k
        out[s:s + _CHUNK] = np.partition(d, k, axis=1)[:, k]
    return out


def prdc(real_features, synthetic_features, k: int = 5) -> PRDC:
    """Precision / recall / density / coverage of `synthetic_features` against `real_features`.

    k = 5 is Naeem et al.'s recommendation (coverage then has expectation ~1 - 2^-k = 0.97 for two
    draws of one distribution, large sets). Both sets need more than k points.
    """
    r = _features(real_features, "real features")
    f = _features(synthetic_features, "synthetic features")
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"feature sizes differ: real d={r.shape[1]}, synthetic d={f.shape[1]}")
    k = int(k)
    for name, a in (("real", r), ("synthetic", f)):
        if a.shape[0] <= k:
            raise ValueError(f"{name} set has {a.shape[0]} points; PRDC with k={k} needs more than {k}")
    r_rad, f_rad = knn_radii(r, k), knn_radii(f, k)
    inside_any = np.zeros(f.shape[0], dtype=bool)      # F_j in some real ball (precision)
    balls_holding = np.zeros(f.shape[0])              # how many real balls hold F_j (density)
    covered = np.zeros(r.shape[0], dtype=bool)         # real ball i holds its nearest F (coverage)
    recalled = np.zeros(r.shape[0], dtype=bool)        # R_i in some synthetic ball (recall)
    for s in range(0, r.shape[0], _CHUNK):
        d = _pairwise(r[s:s + _CHUNK], f)             # (chunk of real, all synthetic)
        in_real_ball = d <= r_rad[s:s + _CHUNK, None]
        inside_any |= in_real_ball.any(0)
        balls_holding += in_real_ball.sum(0)
        covered[s:s + _CHUNK] = d.min(1) <= r_rad[s:s + _CHUNK]
        recalled[s:s + _CHUNK] = (d <= f_rad[None, :]).any(1)
    return PRDC(precision=float(inside_any.mean()), recall=float(recalled.mean()),
                density=float(balls_holding.sum() / (k * f.shape[0])), coverage=float(covered.mean()),
                k=k, n_real=int(r.shape[0]), n_synthetic=int(f.shape[0]))
