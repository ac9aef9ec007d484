"""Memorisation: is any synthetic image a (possibly disguised) copy of a training image?

Per synthetic image: its nearest training image in a given space and the distance; it is FLAGGED
when that distance is below a threshold calibrated on real non-members, or below a hard copy bound.

Calibration. A holdout image (a patient the model never saw) has a nearest training image too;
those distances show how close an honest, unseen image gets to the training set by chance. The
threshold is the order statistic X_(j) of the n holdout->train nearest distances with
j = max(1, floor(q (n + 1))), q = `quantile` (default 0.001), and an image is flagged when its
distance is strictly below it. For an image exchangeable with the holdout (a non-member), the
probability of being flagged is then j / (n + 1) <= max(q, 1 / (n + 1)); that rate is reported as
`expected_false_flag_rate`. With fewer than 1/q - 1 holdout images the quantile q cannot be reached
(the threshold is then the holdout minimum) and `note` says so.

Distance-to-closest-record share (DCR test; Platzer & Reutterer 2021). For each synthetic image:
is its nearest real record a training image or a holdout image? If the generator had learned the
population but not the individuals, a synthetic image would be like a fresh draw from that
population, and by exchangeability its nearest neighbour among the n_train + n_holdout real images
is a training image with probability n_train / (n_train + n_holdout): that is the NULL RATE (0.5
only when the two sets are the same size). A share significantly above it (exact binomial test,
Clopper-Pearson interval) means synthetic images sit nearer to the training records than unseen
data would: memorisation or overfitting. Exact ties count half (every second tie goes each way).
The null assumes train and holdout images come from the same population, which a by-patient random
split gives up to the clustering of images within patients.

The audit's variants (end of the module): `measure_memorisation` (pixel space, where a copy is a
copy whatever the encoder learned), `aligned_memorisation` (copies disguised by a flip, rotation,
shift or crop, on a capped selection), `combined_memorisation` (one measure over both), and
`check_memorisation`, which runs the variants the profile asks for and returns a
`MemorisationCheck` holding the measure for the rules and the audit.json section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from scipy import stats as _st

from synthmed.audit.neighbours import nearest
from synthmed.audit.stats import clopper_pearson
from synthmed.audit.verdict import MemorisationMeasure

if TYPE_CHECKING:  # pragma: no cover
    from synthmed.audit.inputs import Inputs
    from synthmed.audit.profile import AuditProfile

# A near-exact copy in PixelEmbedder space: RMS intensity difference below 1 % of the range.
PIXEL_HARD_COPY_BOUND = 0.01
# A near-exact copy in aligned (rank) space: see registration.aligned_distance.
ALIGNED_HARD_COPY_BOUND = 0.01


@dataclass
class MemorisationResult:
    space: str
    nearest_train: np.ndarray          # (n_synth,) row of the train set passed in
    distance: np.ndarray               # (n_synth,) distance to that training image
    holdout_distance: np.ndarray       # (n_synth,) distance to the nearest holdout image
    flagged: np.ndarray                # (n_synth,) bool
    reason: list[str]                  # "" | "below holdout threshold" | "near-exact copy"
    threshold: float
    quantile: float
    threshold_rank: int                # j: the threshold is the j-th smallest holdout distance
    expected_false_flag_rate: float
    hard_copy_bound: float | None
    calibration_distances: np.ndarray  # (n_holdout,) holdout -> nearest train
    closer_to_train: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def n_flagged(self) -> int:
        return int(self.flagged.sum())

    def to_dict(self, per_image: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "space": self.space, "n_synthetic": int(self.flagged.size), "n_flagged": self.n_flagged,
            "flagged_share": float(self.flagged.mean()) if self.flagged.size else 0.0,
            "threshold": self.threshold, "quantile": self.quantile,
            "threshold_rank": self.threshold_rank,
            "expected_false_flag_rate": self.expected_false_flag_rate,
            "hard_copy_bound": self.hard_copy_bound, "n_holdout": int(self.calibration_distances.size),
            "holdout_distance_quantiles": {
                str(p): float(np.quantile(self.calibration_distances, p)) for p in (0.0, 0.01, 0.5)},
            "synthetic_distance_quantiles": {
                str(p): float(np.quantile(self.distance, p)) for p in (0.0, 0.01, 0.5)},
            "closer_to_train": self.closer_to_train, "note": self.note,
        }
        if per_image:
            d["per_image"] = [{"nearest_train": int(i), "distance": float(x), "flagged": bool(f),
                               "reason": r} for i, x, f, r in
                              zip(self.nearest_train, self.distance, self.flagged, self.reason)]
        return d


def holdout_threshold(calibration: np.ndarray, quantile: float) -> tuple[float, int, float, str]:
    """(threshold, j, expected false-flag rate, note) from holdout->train nearest distances."""
    cal = np.sort(np.asarray(calibration, dtype=np.float64))
    n = cal.size
    if n == 0:
        raise ValueError("no holdout distances to calibrate the memorisation threshold on")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    j = max(1, int(math.floor(quantile * (n + 1))))
    note = ""
    if quantile * (n + 1) < 1:
        note = (f"{n} holdout images cannot calibrate the {quantile:g} quantile (needs at least "
                f"{math.ceil(1 / quantile) - 1}); the threshold is the holdout minimum and a "
                f"non-member image is flagged with probability about 1/{n + 1}")
    return float(cal[j - 1]), j, j / (n + 1), note


def closer_to_train_test(d_train: np.ndarray, d_holdout: np.ndarray, n_train: int, n_holdout: int,
                         alpha: float = 0.05) -> dict[str, Any]:
    """Share of synthetic images nearer to train than to holdout, its exact CI, null rate, p-value."""
    d_train = np.asarray(d_train, dtype=np.float64)
    d_holdout = np.asarray(d_holdout, dtype=np.float64)
    n = int(d_train.size)
    less = int(np.sum(d_train < d_holdout))
    ties = int(np.sum(d_train == d_holdout))
    k = less + ties // 2
    null = n_train / (n_train + n_holdout)
    p = float(_st.binomtest(k, n, null, alternative="greater").pvalue) if n else 1.0
    return {"share": k / n if n else float("nan"), "k": k, "n": n, "ties": ties,
            "ci": list(clopper_pearson(k, n, alpha)), "alpha": alpha, "null_rate": null,
            "p_value_greater": p, "n_train": int(n_train), "n_holdout": int(n_holdout)}


def memorisation_from_distances(d_synth_train: np.ndarray, i_synth_train: np.ndarray,
                                d_synth_holdout: np.ndarray, d_holdout_train: np.ndarray, *,
                                n_train: int, n_holdout: int, quantile: float = 0.001,
                                hard_copy_bound: float | None = None, alpha: float = 0.05,
                                space: str = "embedding") -> MemorisationResult:
    """The decision and the DCR test from precomputed nearest distances (any distance)."""
    d = np.asarray(d_synth_train, dtype=np.float64).ravel()
    thr, j, rate, note = holdout_threshold(d_holdout_train, quantile)
    below = d < thr
    exact = d <= hard_copy_bound if hard_copy_bound is not None else np.zeros_like(below)
    reason = ["near-exact copy" if e else ("below holdout threshold" if b else "")
              for e, b in zip(exact, below)]
    return MemorisationResult(
        space=space, nearest_train=np.asarray(i_synth_train, dtype=np.int64).ravel(), distance=d,
        holdout_distance=np.asarray(d_synth_holdout, dtype=np.float64).ravel(),
        flagged=below | exact, reason=reason, threshold=thr, quantile=quantile, threshold_rank=j,
        expected_false_flag_rate=rate, hard_copy_bound=hard_copy_bound,
        calibration_distances=np.asarray(d_holdout_train, dtype=np.float64).ravel(),
        closer_to_train=closer_to_train_test(d, d_synth_holdout, n_train, n_holdout, alpha),
        note=note)


def memorisation(synth_emb: np.ndarray, train_emb: np.ndarray, holdout_emb: np.ndarray, *,
                 quantile: float = 0.001, hard_copy_bound: float | None = None, alpha: float = 0.05,
                 space: str = "embedding") -> MemorisationResult:
    """Memorisation check in one embedding space (rows = images; Euclidean distance).

    hard_copy_bound: distances at or below it are flagged regardless of calibration ("near-exact
    copy"); in PixelEmbedder space `PIXEL_HARD_COPY_BOUND` (1 % RMS) is a sensible value; None
    disables it.
    """
    d_st, i_st = nearest(synth_emb, train_emb, k=1)
    d_sh, _ = nearest(synth_emb, holdout_emb, k=1)
    d_ht, _ = nearest(holdout_emb, train_emb, k=1)
    return memorisation_from_distances(d_st[:, 0], i_st[:, 0], d_sh[:, 0], d_ht[:, 0],
                                       n_train=len(train_emb), n_holdout=len(holdout_emb),
                                       quantile=quantile, hard_copy_bound=hard_copy_bound,
                                       alpha=alpha, space=space)


def _candidates(query_spaces: Sequence[np.ndarray], base_spaces: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Union of the k nearest base rows in each space (duplicates kept: they cost little)."""
    return np.concatenate([nearest(q, b, k=min(k, len(b)))[1] for q, b in zip(query_spaces, base_spaces)], axis=1)


def shifted(images: np.ndarray, frac: float) -> list[np.ndarray]:
    """The images shifted by -frac, 0, +frac of each spatial axis (every combination), edges
    repeated into the gap."""
    import itertools

    x = np.asarray(images, dtype=np.float32)
    steps = [max(1, round(frac * n)) for n in x.shape[1:]]
    padded = np.pad(x, [(0, 0)] + [(t, t) for t in steps], mode="edge")
    out = []
    for offs in itertools.product(*[(-t, 0, t) for t in steps]):
        idx = (slice(None),) + tuple(slice(t + o, t + o + n) for t, o, n in zip(steps, offs, x.shape[1:]))
        out.append(padded[idx])
    return out


def _coarse_candidates(queries: np.ndarray, emb, base_coarse: np.ndarray, k: int, shift: float) -> np.ndarray:
    """The k distinct base rows nearest to any of the query's +-shift views (just the query when
    shift is 0) in a coarse pixel space."""
    views = shifted(queries, shift) if shift > 0 else [queries]
    found = [nearest(emb.embed(v), base_coarse, k=min(k, len(base_coarse))) for v in views]
    if len(found) == 1:
        return found[0][1]
    d, idx = np.concatenate([f[0] for f in found], 1), np.concatenate([f[1] for f in found], 1)
    idx = np.take_along_axis(idx, np.argsort(d, axis=1, kind="stable"), 1)
    out = np.empty((idx.shape[0], min(k, len(base_coarse))), dtype=np.int64)
    for r, row in enumerate(idx):
        _, first = np.unique(row, return_index=True)
        out[r] = row[np.sort(first)][:out.shape[1]]
    return out


def _best_aligned(queries: np.ndarray, base: np.ndarray, cand: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Register each query onto its candidates; return the best (distance, base row) per query.

    A cascade keeps it affordable: every candidate is first registered on an 8-voxel grid (1/4 of
    the cost), and only the `keep` best per query go through the full search.
    """
    from synthmed.audit.registration import aligned_distance

    cand = np.sort(cand, axis=1)
    dup = np.zeros_like(cand, dtype=bool)
    dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
    rows, cols = np.nonzero(~dup)
    full = np.full(cand.shape, np.inf)
    if keep < cand.shape[1]:
        full[rows, cols] = aligned_distance(queries[rows], base[cand[rows, cols]], search_size=8, final_size=8)
        order = np.lexsort((cand, full), axis=-1)[:, :keep]
        cand = np.take_along_axis(cand, order, 1)
        full = np.where(np.isfinite(np.take_along_axis(full, order, 1)), 0.0, np.inf)
        rows, cols = np.nonzero(np.isfinite(full))
    full[rows, cols] = aligned_distance(queries[rows], base[cand[rows, cols]])
    best = np.lexsort((cand, full), axis=-1)[:, 0]
    r = np.arange(cand.shape[0])
    return full[r, best], cand[r, best]


def copy_search(synth_images: np.ndarray, train_images: np.ndarray, holdout_images: np.ndarray,
                spaces: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]] = (), *, k: int = 8,
                k_coarse: int = 4, keep: int = 3, quantile: float = 0.001,
                hard_copy_bound: float | None = ALIGNED_HARD_COPY_BOUND, alpha: float = 0.05,
                with_holdout_share: bool = False, shift: float = 0.0) -> MemorisationResult:
    """Memorisation in ALIGNED pixel space: sees through flips, rotations, crops, shifts, gamma, noise.

    Candidates for every synthetic image: its `k_coarse` nearest training images in a coarse
    8-voxel pixel space, searched with the image and its mirror (finds flipped copies), plus its `k`
    nearest in each of `spaces` (a list of (synth_emb, train_emb, holdout_emb), e.g. the contrastive
    encoder: finds rotated, cropped, shifted copies). Each candidate is registered onto the
    synthetic image (`registration.aligned_distance`, via a cascade keeping the `keep` best) and the
    closest after alignment is its nearest training image. The holdout images go through the
    identical procedure to calibrate the threshold, so the alignment's power to make unrelated
    images look alike is priced in.
    with_holdout_share: also register against holdout candidates for the DCR share (doubles the cost).
    shift: also propose the coarse candidates of the image shifted by +-shift of each axis (a 3-6 %
    shifted copy's source is often not among its plain coarse neighbours when the encoder is weak).
    Measured on NIH chest X-rays (tests/test_audit_memorisation.py): exact, flipped, rotated,
    shifted, cropped, gamma-changed and noisy copies come out at 0.000-0.02 RMS, unseen patients at
    >= 0.025.
    """
    from synthmed.audit.embeddings import CoarsePixelEmbedder

    synth_images, train_images, holdout_images = (np.asarray(a) for a in (synth_images, train_images, holdout_images))
    plain, mirror = CoarsePixelEmbedder(8), CoarsePixelEmbedder(8, flip=True)
    c_train = plain.embed(train_images)

    def cands(queries: np.ndarray, which: int, base_coarse: np.ndarray) -> np.ndarray:
        parts = [_coarse_candidates(queries, plain, base_coarse, k_coarse, shift),
                 _coarse_candidates(queries, mirror, base_coarse, k_coarse, shift)]
        base_idx = 1 if base_coarse is c_train else 2
        for sp in spaces:
            parts.append(nearest(sp[which], sp[base_idx], k=min(k, len(sp[base_idx])))[1])
        return np.concatenate(parts, axis=1)

    d_st, i_st = _best_aligned(synth_images, train_images, cands(synth_images, 0, c_train), keep)
    d_ht, _ = _best_aligned(holdout_images, train_images, cands(holdout_images, 2, c_train), keep)
    if with_holdout_share:
        c_hold = plain.embed(holdout_images)
        d_sh, _ = _best_aligned(synth_images, holdout_images, cands(synth_images, 0, c_hold), keep)
    else:
        d_sh = np.full(d_st.shape, np.nan)
    res = memorisation_from_distances(d_st, i_st, d_sh, d_ht, n_train=len(train_images),
                                      n_holdout=len(holdout_images), quantile=quantile,
                                      hard_copy_bound=hard_copy_bound, alpha=alpha, space="aligned")
    if not with_holdout_share:
        res.closer_to_train = {"note": "not computed in aligned space (with_holdout_share=False); "
                                       "see the embedding spaces"}
    return res


def combine(results: Sequence[MemorisationResult]) -> tuple[np.ndarray, list[str]]:
    """Flag an image when any space flags it; reasons name the spaces.

    Each space's false-flag rate adds up (union bound): with m spaces a non-member is flagged with
    probability up to the sum of their `expected_false_flag_rate`s.
    """
    flagged = np.zeros_like(results[0].flagged)
    reasons: list[list[str]] = [[] for _ in range(flagged.size)]
    for r in results:
        flagged |= r.flagged
        for i in np.nonzero(r.flagged)[0]:
            reasons[i].append(f"{r.space}: {r.reason[i]}")
    return flagged, ["; ".join(x) for x in reasons]


# ------------------------------------------------------------------------ the audit's variants
def null_ci(res: MemorisationResult, alpha: float) -> tuple[float, float]:
    n_hold = int(np.asarray(res.calibration_distances).size)
    j = int(res.threshold_rank)
    # The threshold is the j-th smallest of n holdout distances, so the chance that an unseen image
    # falls below it is F(X_(j)) ~ Beta(j, n + 1 - j): its mean is the null rate j / (n + 1), its
    # quantiles are how far this holdout's threshold may sit from that.
    return (float(_st.beta.ppf(alpha / 2, j, n_hold + 1 - j)), float(_st.beta.ppf(1 - alpha / 2, j, n_hold + 1 - j)))


def measure_memorisation(synth_pix: np.ndarray, train_pix: np.ndarray, holdout_pix: np.ndarray,
                         profile: "AuditProfile", alpha: float) -> tuple[MemorisationResult, MemorisationMeasure]:
    """Near-copies in pixel space (where a copy is a copy, whatever the encoder learned)."""
    bound = profile.memorisation.hard_copy_bound
    res = memorisation(synth_pix, train_pix, holdout_pix, quantile=profile.memorisation.quantile,
                       hard_copy_bound=PIXEL_HARD_COPY_BOUND if bound is None else bound,
                       alpha=alpha, space="pixel")
    flagged = np.asarray(res.flagged, dtype=bool)
    n_flag, n_syn = int(flagged.sum()), int(flagged.size)
    measure = MemorisationMeasure(
        n_synthetic=n_syn, n_flagged=n_flag, rate_ci=clopper_pearson(n_flag, n_syn, alpha),
        null_rate=float(res.expected_false_flag_rate), null_ci=null_ci(res, alpha),
        n_hard_copies=sum(1 for r in res.reason if r == "near-exact copy"), threshold=float(res.threshold))
    return res, measure


def aligned_memorisation(inputs: "Inputs", encoder_vectors: dict[str, np.ndarray] | None,
                         profile: "AuditProfile", alpha: float, seed: int) -> tuple[MemorisationResult, dict[str, Any]]:
    """Copies disguised by a flip, rotation, shift or crop (`copy_search`), on a capped
    selection: registration costs ~40 ms per image, so at most `aligned_max_images` synthetic
    images are registered, those whose nearest training image is closest BEFORE alignment (8-voxel
    coarse pixels of the image, its mirror image and their +-5 % shifts, and the encoder; each
    distance ranked against the holdout's, the best rank counts), and a random sample of as many
    holdout images calibrates the threshold.

    Leaving images out can only remove flags, so a non-member image is still flagged with
    probability at most j / (n + 1) of the registered holdout sample. Returns (result over ALL
    synthetic images, unregistered ones unflagged at distance inf; selection record)."""
    from synthmed.audit.embeddings import CoarsePixelEmbedder

    cap = profile.memorisation.aligned_max_images
    syn, train, hold = inputs.synthetic, inputs.train, inputs.holdout
    c_train = CoarsePixelEmbedder(8).embed(train)

    def coarse(queries: np.ndarray, flip: bool) -> np.ndarray:
        # nearest coarse distance over the query shifted by 0 / +-5 % per axis: a shifted copy is
        # mid-ranked without it (measured on NIH: 3-6 % shifts ranked 0.5-0.9 of the holdout's)
        emb = CoarsePixelEmbedder(8, flip=flip)
        return np.min([nearest(emb.embed(v), c_train, k=1)[0][:, 0] for v in shifted(queries, 0.05)], axis=0)

    views = [(coarse(syn, False), coarse(hold, False)), (coarse(syn, True), coarse(hold, True))]
    if encoder_vectors is not None:
        views.append(tuple(nearest(encoder_vectors[k], encoder_vectors["train"], k=1)[0][:, 0]
                           for k in ("synthetic", "holdout")))
    score = np.ones(len(syn))
    for d_syn, d_hold in views:
        score = np.minimum(score, np.searchsorted(np.sort(d_hold), d_syn, side="right") / d_hold.size)
    reg = np.sort(np.lexsort((np.arange(len(syn)), score))[:cap])
    hsel = np.sort(np.random.default_rng(seed).permutation(len(hold))[:cap])
    enc = ([] if encoder_vectors is None else
           [(encoder_vectors["synthetic"][reg], encoder_vectors["train"], encoder_vectors["holdout"][hsel])])
    part = copy_search(syn[reg], train, hold[hsel], enc, quantile=profile.memorisation.quantile,
                       alpha=alpha, shift=0.05)
    d = np.full(len(syn), np.inf)
    i = np.full(len(syn), -1, dtype=np.int64)
    d[reg], i[reg] = part.distance, part.nearest_train
    res = memorisation_from_distances(d, i, np.full(len(syn), np.nan), part.calibration_distances,
                                      n_train=len(train), n_holdout=len(hsel),
                                      quantile=profile.memorisation.quantile,
                                      hard_copy_bound=part.hard_copy_bound, alpha=alpha, space="aligned")
    res.closer_to_train, res.note = {}, part.note
    selection = {
        "n_synthetic": int(len(syn)), "n_registered": int(reg.size),
        "n_holdout": int(len(hold)), "n_holdout_registered": int(hsel.size),
        "max_images": cap,
        "selection": ("all synthetic images" if reg.size == len(syn) else
                      f"the {reg.size} synthetic images nearest to a training image before alignment "
                      f"(coarse pixels, also mirrored, shifted by +-5 %{', encoder' if encoder_vectors is not None else ''}; "
                      f"each ranked against the holdout's distances)"),
    }
    return res, selection


def combined_memorisation(results: list[MemorisationResult], alpha: float) -> tuple[np.ndarray, list[str], MemorisationMeasure]:
    """One measure over several spaces: an image is flagged (a hard copy) when any space flags it
    (calls it one). The null rate adds up over the spaces (union bound), and so do the upper ends
    of their null intervals: the rule then fails only on more flags than all spaces together
    could give an unseen image."""
    flagged, reasons = combine(results)
    hard = np.zeros(flagged.size, dtype=bool)
    for r in results:
        hard |= np.array([x == "near-exact copy" for x in r.reason], dtype=bool)
    cis = [null_ci(r, alpha) for r in results]
    n_flag, n_syn = int(flagged.sum()), int(flagged.size)
    measure = MemorisationMeasure(
        n_synthetic=n_syn, n_flagged=n_flag, rate_ci=clopper_pearson(n_flag, n_syn, alpha),
        null_rate=min(1.0, sum(float(r.expected_false_flag_rate) for r in results)),
        null_ci=(max(c[0] for c in cis), min(1.0, sum(c[1] for c in cis))),
        n_hard_copies=int(hard.sum()), threshold=float(results[0].threshold),
        spaces=tuple(r.space for r in results))
    return flagged, reasons, measure


def _aligned_record(res: MemorisationResult, selection: dict[str, Any]) -> dict[str, Any]:
    reg = np.isfinite(res.distance)
    return {**selection, "n_flagged": int(res.flagged.sum()),
            "n_hard_copies": sum(1 for r in res.reason if r == "near-exact copy"),
            "threshold": float(res.threshold), "threshold_rank": int(res.threshold_rank),
            "expected_false_flag_rate": float(res.expected_false_flag_rate),
            "hard_copy_bound": res.hard_copy_bound,
            "holdout_distance_quantiles": {str(p): float(np.quantile(res.calibration_distances, p))
                                           for p in (0.0, 0.01, 0.5)},
            "registered_distance_quantiles": ({str(p): float(np.quantile(res.distance[reg], p))
                                               for p in (0.0, 0.01, 0.5)} if reg.any() else {}),
            "note": res.note}


@dataclass
class MemorisationCheck:
    """The memorisation variants of one audit: pixel space first, then the aligned search."""

    results: list[MemorisationResult]
    flagged: np.ndarray
    reasons: list[str]
    measure: MemorisationMeasure
    aligned_selection: dict[str, Any] | None = None

    @property
    def pixel(self) -> MemorisationResult:
        return self.results[0]

    def source(self, i: int) -> MemorisationResult:
        """The first space that flagged image i (pixel before aligned)."""
        return next(r for r in self.results if r.flagged[i])

    def record(self) -> dict[str, Any]:
        """The "memorisation" section of audit.json."""
        mem = self.measure
        flagged_list = []
        for i in np.nonzero(self.flagged)[0]:
            src = self.source(i)
            flagged_list.append({"synthetic_index": int(i), "train_position": int(src.nearest_train[i]),
                                 "nearest_train_distance": float(src.distance[i]), "reason": str(self.reasons[i])})
        core = self.pixel.to_dict()
        extra = {k: core[k] for k in ("quantile", "threshold_rank", "hard_copy_bound", "n_holdout",
                                      "holdout_distance_quantiles", "synthetic_distance_quantiles",
                                      "closer_to_train", "note") if k in core}
        aligned = self.results[1] if self.aligned_selection is not None else None
        return {
            "space": "+".join(mem.spaces), "n_synthetic": mem.n_synthetic, "n_flagged": mem.n_flagged,
            "rate_ci": list(mem.rate_ci), "null_rate": mem.null_rate, "null_ci": list(mem.null_ci),
            "n_hard_copies": mem.n_hard_copies, "threshold": mem.threshold,
            "flagged": flagged_list, **extra,
            "aligned": (_aligned_record(aligned, self.aligned_selection) if aligned is not None else
                        {"note": "not run (profile memorisation.aligned is false)"}),
        }


def check_memorisation(inputs: "Inputs", pixel_vectors: dict[str, np.ndarray], encoder_vectors: dict[str, np.ndarray] | None,
                       profile: "AuditProfile", alpha: float, seed: int,
                       on_aligned: Callable[[], None] | None = None) -> MemorisationCheck:
    """Every memorisation variant the profile asks for, combined into one measure."""
    pix_res, _ = measure_memorisation(pixel_vectors["synthetic"], pixel_vectors["train"],
                                      pixel_vectors["holdout"], profile, alpha)
    results, selection = [pix_res], None
    if profile.memorisation.aligned:
        if on_aligned is not None:
            on_aligned()
        a_res, selection = aligned_memorisation(inputs, encoder_vectors, profile, alpha, seed)
        results.append(a_res)
    flagged, reasons, measure = combined_memorisation(results, alpha)
    return MemorisationCheck(results, flagged, reasons, measure, selection)
