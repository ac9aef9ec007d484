"""Nearest neighbours for the audit: exact faiss search, a numpy reference, and the tiled distance.

`nearest` asks faiss (IndexFlatL2: exact, multithreaded BLAS) for a few more candidates than
needed, then recomputes their distances in float64 and sorts by (distance, index). faiss computes
squared distances as |q|^2 + |b|^2 - 2 q.b in float32, which loses digits for near-identical
images (the case that matters most here: copies); the recomputation gives exact distances, and the
deterministic tie-break makes `nearest` and `nearest_bruteforce` return identical indices.

Tiled distance (after Carlini et al. 2023, "Extracting training data from diffusion models"):
both images are cut into `tiles` x `tiles` (x `tiles` in 3D) blocks and the L2 distance is taken
per block. Carlini et al. summarise with the MAXIMUM over tiles, which asks every tile to match
(it stops images that share a flat background from counting as copies). We want the opposite
robustness as well: a copy that differs in ONE region (a burned-in marker, an inpainted lesion, a
cropped corner) must still count, so the summary is a quantile of the tile distances
(default the median: at least half of the tiles must match); quantile=1.0 gives Carlini's
maximum. Tile distances are root-mean-square differences per tile, so when the difference is
spread evenly the tiled distance equals the RMS difference of the whole images, which is the
distance in `synthmed.audit.embeddings.PixelEmbedder` space: thresholds in the two are comparable. Computing it against every training image would cost a full pass per
tile, so `nearest_tiled` takes faiss's top candidates in whole-image pixel space and re-ranks those.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

_FAISS_PAD = 4  # extra candidates fetched from faiss before the exact float64 re-sort
_CHUNK = 1024


def cpu_threads() -> int:
    """CPUs this process may use (respects taskset / cgroup affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def _as_matrix(a: Any, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim < 2:
        raise ValueError(f"{what}: expected (N, d) vectors or (N, *shape) images, got shape {a.shape}")
    m = np.ascontiguousarray(a.reshape(a.shape[0], -1), dtype=np.float32)
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{what}: contains NaN or infinity")
    return m


def _exact_rows(q: np.ndarray, base: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Exact distances from each query row to its candidate rows of base (-1 = none: inf)."""
    d = np.empty(cand.shape, dtype=np.float64)
    # a (chunk, candidates, d) float32 difference block of ~8 MB stays in cache; larger is slower
    step = max(1, min(_CHUNK, (8 << 20) // (4 * max(1, cand.shape[1] * q.shape[1]))))
    for s in range(0, q.shape[0], step):
        cc = cand[s:s + step]
        valid = cc >= 0
        # float32 differences of close values are exact (Sterbenz); squares summed in float64
        diff = base[np.where(valid, cc, 0)] - q[s:s + step, None, :]
        dc = np.sqrt(np.einsum("nkd,nkd->nk", diff, diff, dtype=np.float64))
        dc[~valid] = np.inf
        d[s:s + step] = dc
    return d


def _exact_sorted(q: np.ndarray, base: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k of the candidates by exact distance, ties to the lower index.

    The candidates came from an approximate-arithmetic search, so a row is only trusted when its
    worst candidate is clearly (beyond float32 rounding of |q|^2 + |b|^2 - 2 q.b) farther than its
    k-th best: otherwise a neighbour or a tie partner might not have been fetched, and that row is
    recomputed against the whole base. This is rare (ties, exact duplicates) and makes the result
    independent of how the candidates were found.
    """
    d = _exact_rows(q, base, cand)
    safe = np.where(cand >= 0, cand, np.iinfo(np.int64).max)
    order = np.lexsort((safe, d), axis=-1)
    d, safe = np.take_along_axis(d, order, 1), np.take_along_axis(safe, order, 1)
    if cand.shape[1] < base.shape[0]:
        qn = np.einsum("nd,nd->n", q, q, dtype=np.float64)
        bmax = float(np.einsum("md,md->m", base, base, dtype=np.float64).max())
        tol = 1e-5 * (qn + bmax) + 1e-12
        shaky = np.nonzero(d[:, -1] ** 2 - d[:, k - 1] ** 2 <= tol)[0]
        everyone = np.arange(base.shape[0])
        for r in shaky:
            dr = _exact_rows(q[r:r + 1], base, everyone[None, :])[0]
            o = np.lexsort((everyone, dr))[: d.shape[1]]
            d[r], safe[r] = dr[o], everyone[o]
    return d[:, :k].copy(), safe[:, :k].copy()


def nearest(query: Any, base: Any, k: int = 1, exact: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """k nearest rows of `base` for every row of `query` (Euclidean), via faiss.

    query (N, ...) and base (M, ...) are flattened to vectors. Returns (distances (N, k) float64,
    indices (N, k) int64), nearest first, ties broken by the lower index.
    exact=False uses an HNSW graph (approximate, for very large bases); the distances returned are
    still exact for the neighbours it finds.
    """
    import faiss  # imported here: faiss is heavy and only the audit needs it

    q, b = _query_and_base(query, base, k)
    faiss.omp_set_num_threads(cpu_threads())
    if exact:
        index = faiss.IndexFlatL2(b.shape[1])
    else:
        index = faiss.IndexHNSWFlat(b.shape[1], 32)
        index.hnsw.efSearch = max(64, 4 * k)
    index.add(b)
    kk = min(b.shape[0], k + _FAISS_PAD)
    _, cand = index.search(q, kk)
    return _exact_sorted(q, b, cand.astype(np.int64), k)


def _query_and_base(query: Any, base: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    q = _as_matrix(query, "query")
    b = _as_matrix(base, "base")
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"query has {q.shape[1]} features per row but base has {b.shape[1]}")
    if not 1 <= k <= b.shape[0]:
        raise ValueError(f"k must be between 1 and the base size {b.shape[0]}, got {k}")
    return q, b


def nearest_bruteforce(query: Any, base: Any, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Reference for `nearest`: all pairwise distances in numpy, same output format and tie-break."""
    q, b = _query_and_base(query, base, k)
    b64 = b.astype(np.float64)
    bn = np.einsum("md,md->m", b64, b64)
    kk = min(b.shape[0], k + _FAISS_PAD)
    cand = np.empty((q.shape[0], kk), dtype=np.int64)
    for s in range(0, q.shape[0], _CHUNK):
        qc = q[s:s + _CHUNK].astype(np.float64)
        d2 = bn[None, :] - 2.0 * qc @ b64.T  # + |q|^2, constant per row, does not change the order
        if kk < b.shape[0]:
            part = np.argpartition(d2, kk - 1, axis=1)[:, :kk]
        else:
            part = np.broadcast_to(np.arange(b.shape[0]), d2.shape).copy()
        cand[s:s + _CHUNK] = part
    return _exact_sorted(q, b, cand, k)


# ------------------------------------------------------------------------------ tiled distance
def _tile_slices(shape: tuple[int, ...], tiles: int) -> list[tuple[slice, ...]]:
    edges = [np.linspace(0, n, min(tiles, n) + 1).round().astype(int) for n in shape]
    grids = np.meshgrid(*[np.arange(len(e) - 1) for e in edges], indexing="ij")
    out = []
    for idx in zip(*[g.ravel() for g in grids]):
        out.append(tuple(slice(e[i], e[i + 1]) for e, i in zip(edges, idx)))
    return out


def tiled_distance(a: Any, b: Any, tiles: int = 4, quantile: float = 0.5) -> np.ndarray:
    """Tiled distance between paired images a[i] and b[i] (shapes (N, *spatial), broadcastable).

    Per tile: sqrt(mean squared difference) (RMS); summary: the `quantile` of the
    tile distances (0.5 = median, 1.0 = Carlini's max). Works for 2D and 3D images alike.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    a, b = np.broadcast_arrays(a, b)
    if a.ndim < 2:
        raise ValueError(f"expected (N, *spatial) images, got shape {a.shape}")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    spatial = a.shape[1:]
    diff2 = (a - b) ** 2
    per_tile = np.stack([diff2[(slice(None),) + sl].reshape(a.shape[0], -1).mean(axis=1)
                         for sl in _tile_slices(spatial, tiles)], axis=1)
    per_tile = np.sqrt(per_tile)
    return np.quantile(per_tile, quantile, axis=1)


def nearest_tiled(query: Any, base: Any, k: int = 1, candidates: int = 32, tiles: int = 4,
                  quantile: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """k nearest images of `base` under the tiled distance, re-ranking faiss's whole-image top
    `candidates` (images (N, *spatial) and (M, *spatial)). Returns (distances, indices) (N, k).

    Limitation: a copy whose whole-image distance puts it outside the top `candidates` is missed;
    raise `candidates` for large, very similar training sets.
    """
    query = np.asarray(query, dtype=np.float32)
    base = np.asarray(base, dtype=np.float32)
    if query.shape[1:] != base.shape[1:]:
        raise ValueError(f"query images have shape {query.shape[1:]} but base images {base.shape[1:]}")
    c = min(max(candidates, k), base.shape[0])
    _, cand = nearest(query, base, k=c)
    dist = np.empty(cand.shape, dtype=np.float64)
    for j in range(c):
        dist[:, j] = tiled_distance(query, base[cand[:, j]], tiles=tiles, quantile=quantile)
    order = np.lexsort((cand, dist), axis=-1)[:, :k]
    return np.take_along_axis(dist, order, 1), np.take_along_axis(cand, order, 1)
