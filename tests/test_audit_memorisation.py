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


# ------------------------------------------------------------------------- memorisation rules
from synthmed.audit.memorisation import (  # noqa: E402
    PIXEL_HARD_COPY_BOUND, closer_to_train_test, combine, copy_search, holdout_threshold, memorisation,
)


def test_holdout_threshold_rule():
    cal = np.arange(1.0, 11.0)  # 10 holdout distances 1..10
    # q = 0.001: q * (n+1) = 0.011 < 1 -> j = 1 (the minimum), false-flag rate 1/11, with a note
    thr, j, rate, note = holdout_threshold(cal, 0.001)
    assert (thr, j) == (1.0, 1) and rate == pytest.approx(1 / 11) and "cannot calibrate" in note
    # q = 0.2: floor(0.2 * 11) = 2 -> the 2nd smallest, rate 2/11, no note
    thr, j, rate, note = holdout_threshold(cal, 0.2)
    assert (thr, j) == (2.0, 2) and rate == pytest.approx(2 / 11) and note == ""


def test_closer_to_train_null_is_the_size_ratio():
    rng = np.random.default_rng(0)
    train, holdout = rng.normal(size=(600, 8)), rng.normal(size=(200, 8))
    fresh = rng.normal(size=(2000, 8))  # a generator that learned the population only
    r = memorisation(fresh, train, holdout)
    t = r.closer_to_train
    assert t["null_rate"] == 0.75  # 600 / (600 + 200), not 0.5
    assert t["ci"][0] < 0.75 < t["ci"][1] and t["p_value_greater"] > 0.01
    # ties count half: 2 strictly closer, 2 ties -> k = 3 of 5
    t = closer_to_train_test(np.array([0, 0, 1, 1, 5.0]), np.array([1, 1, 1, 1, 2.0]), 10, 10)
    assert t["k"] == 3 and t["ties"] == 2 and t["share"] == 0.6
    leaky = np.concatenate([fresh[:1800], train[:200] + 0.01])
    r = memorisation(leaky, train, holdout, hard_copy_bound=0.05)
    assert r.closer_to_train["p_value_greater"] < 0.01  # 10 % copies: share 0.775 vs null 0.75
    assert r.flagged[1800:].all() and set(r.reason[1800:]) == {"near-exact copy"}
    assert r.flagged[:1800].mean() < 0.01
    assert (r.nearest_train[1800:] == np.arange(200)).all()
    flags, reasons = combine([r, memorisation(leaky, train, holdout, space="other")])
    assert flags[1800:].all() and reasons[1800].startswith("embedding: near-exact copy")
    d = r.to_dict(per_image=True)
    assert d["n_flagged"] == int(r.flagged.sum()) and len(d["per_image"]) == 2000


# ------------------------------------------------------------- planted copies in real X-rays
@pytest.mark.slow
def test_planted_copies_in_real_chest_xrays(nih_cxr):
    """Issue must-show 2, on NIH ChestX-ray14 (264 real patients, up to 66 images each).

    Split BY PATIENT: 60 % train (the sources of the planted copies and the encoder's training
    data), 20 % holdout (calibrates the thresholds), 20 % unseen (the honest part of the cohort).
    Planted at 1 % and 5 % of a cohort, per disguise, from distinct training images. A copy's flag
    depends only on the copy and on train/holdout, so one search over unseen + all planted images
    evaluates every cohort at once.

    Only the encoder is trained, so only the encoder-space results vary between machines (BLAS,
    CPU, dependency versions); the split, the copies and the pixel-space checks are fixed by
    their seeds. Spread over encoder seeds 0-4 with this split (a /tmp script running this body
    with `ContrastiveEncoder(seed=s)`, 2-core CPU, torch 2.13.0), and the CI machine of issue 8:

        encoder seed        0      1      2      3      4      CI
        copies found        0.978  0.956  0.923  0.967  0.978  0.967
        unseen flagged      0.005  0.005  0.010  0.005  0.010  0.010
        worst kind          0.923  0.692  0.615  0.846  0.923  -     (shift / crop_resize)
        other kinds         1.000  1.000  1.000  1.000  1.000  -     (exact flip rotate gamma noise)
        flag names source   1.000  1.000  1.000  1.000  1.000  -
        top-1 mirrored enc  0.462  0.385  0.615  0.615  0.692  0.385 (pixels: 0.154 always)

    With the split seed varied too (seeds 1, 2): found 0.952, 0.964; unseen flagged 0.005,
    0.026; worst kind 0.833, 0.833; top-1 0.833 vs 0.25, 0.417 vs 0.25.
    Bounds, each with room beyond the worst value seen with this split: found >= 0.85; unseen
    <= 0.025 (the threshold is the 0.1 % quantile of holdout-to-train distances, with ~200
    holdout images about their minimum, so ~1/200 of unseen images fall under it by chance; 5 of
    200 has probability < 0.4 % under Binomial(200, 0.005));
    shift and crop_resize (resampled, the hardest disguises; 13 copies each) >= 0.5, the other
    kinds >= 0.9; a flag names the right source >= 0.95; the encoder's top-1 on mirrored copies
    beats pixels by > 0.1 (the old bound, 0.3, failed on the CI machine at 0.231).
    """
    from _audit_data import load_nih, split_by_patient

    from synthmed.audit.augment import COPY_KINDS, transform_copy
    from synthmed.audit.embeddings import ContrastiveEncoder, PixelEmbedder

    images, patients = load_nih(str(nih_cxr))
    train, holdout, unseen = split_by_patient(patients, (0.6, 0.2, 0.2), seed=0)
    assert not set(patients[train]) & set(patients[holdout])
    assert not set(patients[unseen]) & (set(patients[train]) | set(patients[holdout]))
    n_unseen = len(unseen)
    per_kind = {rate: int(round(rate * n_unseen / (1 - rate))) for rate in (0.01, 0.05)}  # 2, 11
    rng = np.random.default_rng(1)
    sources = rng.choice(train, sum(per_kind.values()) * len(COPY_KINDS), replace=False)
    planted, kinds, rates = [], [], []
    s = 0
    for rate, n in per_kind.items():
        for kind in COPY_KINDS:
            planted.append(transform_copy(images[sources[s:s + n]], kind, seed=s))
            kinds += [kind] * n
            rates += [rate] * n
            s += n
    cohort = np.concatenate([images[unseen]] + planted)
    kinds, rates = np.array(kinds), np.array(rates)

    enc = ContrastiveEncoder(2, (64, 64), seed=0).fit(images[train], steps=150)
    e_train, e_hold, e_coh = enc.embed(images[train]), enc.embed(images[holdout]), enc.embed(cohort)

    # the encoder sees through mirroring better than pixels (spread in the docstring)
    mirrored = cohort[n_unseen:][kinds == "flip"]
    src_flip = sources[kinds == "flip"]
    pix = PixelEmbedder()
    top1_enc = np.mean(train[nearest(enc.embed(mirrored), e_train)[1][:, 0]] == src_flip)
    top1_pix = np.mean(train[nearest(pix.embed(mirrored), pix.embed(images[train]))[1][:, 0]] == src_flip)
    assert top1_enc > top1_pix + 0.1, (top1_enc, top1_pix)

    res = copy_search(cohort, images[train], images[holdout], [(e_coh, e_train, e_hold)])
    unseen_rate = res.flagged[:n_unseen].mean()
    hit = res.flagged[n_unseen:]
    found_source = train[res.nearest_train[n_unseen:]] == sources
    by_kind = {k: float(hit[kinds == k].mean()) for k in COPY_KINDS}
    by_rate = {r: float(hit[rates == r].mean()) for r in per_kind}
    msg = f"unseen {unseen_rate:.3f}, planted {hit.mean():.3f}, by kind {by_kind}, by rate {by_rate}"
    print(msg, f"threshold {res.threshold:.4f}", res.note)
    assert hit.mean() >= 0.85, msg
    assert unseen_rate <= 0.025, msg
    resampled = ("shift", "crop_resize")
    assert min(by_kind[k] for k in resampled) >= 0.5, msg
    assert min(v for k, v in by_kind.items() if k not in resampled) >= 0.9, msg
    assert found_source[hit].mean() >= 0.95, msg  # a flag names the right training image
    # exact and noisy copies are also caught in plain pixel space by the hard copy bound (no
    # training involved: fixed by the split; 0.0 here, 0.020 on split seed 1)
    pm = memorisation(pix.embed(cohort), pix.embed(images[train]), pix.embed(images[holdout]),
                      hard_copy_bound=PIXEL_HARD_COPY_BOUND, space="pixel")
    assert pm.flagged[n_unseen:][np.isin(kinds, ["exact"])].all()
    assert pm.flagged[:n_unseen].mean() <= 0.01


@pytest.mark.slow
def test_aligned_distance_sees_through_disguises_2d_and_3d():
    from test_audit_embeddings import _blobs

    from synthmed.audit.augment import transform_copy
    from synthmed.audit.registration import aligned_distance

    for sd, size, kinds in ((2, 32, ("flip", "shift", "rotate", "gamma")), (3, 16, ("flip", "shift"))):
        x = _blobs(2, size, seed=5, sd=sd)
        other = _blobs(2, size, seed=6, sd=sd)
        for kind in kinds:
            d_copy = aligned_distance(transform_copy(x, kind, seed=1), x)
            d_other = aligned_distance(transform_copy(x, kind, seed=1), other)
            assert np.all(d_copy < 0.5 * d_other), (sd, kind, d_copy, d_other)
