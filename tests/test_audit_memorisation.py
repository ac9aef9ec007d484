"""Nearest neighbours, the tiled distance, and memorisation (planted-copy) detection."""

from __future__ import annotations

import numpy as np
import pytest

from synthmed.audit.neighbours import nearest, nearest_bruteforce, nearest_tiled, tiled_distance


def test_faiss_matches_bruteforce_exactly():
    rng = np.random.default_rng(0)
    base = rng.random((700, 256), dtype=np.float32)
    query = rng.random((300, 256), dtype=np.float32)
    query[:20] = base[100:120]                       # exact copies: distance 0
    query[20:40] = base[200:220] + 1e-4              # near copies: float32 expansion loses these
    base[650:660] = base[0]                          # duplicated rows: ties broken by lower index
    query[40] = base[0]
    d, i = nearest(query, base, k=5)
    db, ib = nearest_bruteforce(query, base, k=5)
    np.testing.assert_array_equal(i, ib)
    np.testing.assert_array_equal(d, db)
    assert np.all(d[:20, 0] == 0) and np.array_equal(i[:20, 0], np.arange(100, 120))
    np.testing.assert_allclose(d[20:40, 0], 1e-4 * np.sqrt(256), rtol=1e-3)
    assert list(i[40]) == [0, 650, 651, 652, 653]
    assert np.all(np.diff(d, axis=1) >= 0)


def test_nearest_on_images_and_errors():
    rng = np.random.default_rng(1)
    base = rng.random((50, 8, 8, 8), dtype=np.float32)  # 3D images are flattened
    d, i = nearest(base[[3, 7]], base, k=1)
    assert list(i[:, 0]) == [3, 7] and np.all(d == 0)
    with pytest.raises(ValueError, match="features"):
        nearest(rng.random((2, 5)), rng.random((3, 6)))
    with pytest.raises(ValueError, match="k must"):
        nearest(rng.random((2, 5)), rng.random((3, 5)), k=4)


def test_tiled_distance_properties():
    rng = np.random.default_rng(2)
    a = rng.random((3, 32, 32), dtype=np.float32)
    # an even difference of 0.1 everywhere: every tile RMS is 0.1 -> tiled = plain RMS = 0.1
    np.testing.assert_allclose(tiled_distance(a, a + 0.1), 0.1, rtol=1e-5)
    # one of 16 tiles changed completely: the median ignores it, Carlini's max (q=1) does not
    b = a.copy()
    b[:, :8, :8] = 1 - b[:, :8, :8]
    assert np.all(tiled_distance(a, b) == 0)
    assert np.all(tiled_distance(a, b, quantile=1.0) > 0.3)
    # 3D: 4x4x4 tiles; a change in 1 of 64 tiles is ignored by the median
    v = rng.random((2, 16, 16, 16), dtype=np.float32)
    w = v.copy()
    w[:, :4, :4, :4] = 0
    assert np.all(tiled_distance(v, w) == 0) and np.all(tiled_distance(v, w, quantile=1.0) > 0)


def test_nearest_tiled_finds_a_regionally_altered_copy():
    rng = np.random.default_rng(3)
    base = rng.random((200, 32, 32), dtype=np.float32) * 0.5 + 0.25
    copy = base[17].copy()
    copy[8:16, 8:16] = 1.0  # a burned-in block over one tile: the rest is a verbatim copy
    d, i = nearest_tiled(copy[None], base, k=2)
    assert i[0, 0] == 17 and d[0, 0] == 0 and d[0, 1] > 0.1
