"""Fidelity and diversity of a synthetic cohort in one call, each number beside its real floor.

`fidelity_diversity(train, holdout, synthetic, embed=...)` computes, in the feature space of
`embed` (the audit's contrastive encoder trained on the real train split, `ContrastiveEncoder.embed`,
or the user's local weights via `load_embedder(...).embed`: one encoder for audit and evaluation):

- the Fréchet distance (`fidelity.frechet_distance`), floor by bootstrapping holdout patients;
- precision / recall / density / coverage (`prdc`), floor by subsampling half the holdout patients;
- MS-SSIM diversity (`diversity`), floor likewise; on images, not features.

Synthetic sets are compared at the size the floor was measured at (the first `floor.size`
synthetic images), since every one of these numbers moves with the sample size; a holdout (or a
condition's holdout group) larger than the synthetic set is cut to whole patients that fit. Volumes
(N, D, H, W) are read slice-wise (2.5D, `slices`) when `embed` is a 2D embedder (`slicewise=True`);
a 3D embedder takes them whole; their MS-SSIM is always slice-wise. With labels, everything is also reported per condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from synthmed.evaluate.diversity import diversity
from synthmed.evaluate.fidelity import frechet_distance
from synthmed.evaluate.floor import Floor, as_numbers, patient_groups, real_floor
from synthmed.evaluate.groups import group_masks
from synthmed.evaluate.prdc import prdc
from synthmed.evaluate.slices import slicewise_diversity, slicewise_features


@dataclass(frozen=True)
class MetricReadout:
    synthetic: dict[str, float]   # the cohort's value(s), at the floor's size (see `_readout`)
    floor: Floor                  # real holdout vs real train, with its interval per number


@dataclass(frozen=True)
class FidelityDiversity:
    frechet: MetricReadout
    prdc: MetricReadout
    ms_ssim: MetricReadout
    by_condition: dict[str, "FidelityDiversity | str"] = field(default_factory=dict)  # str: why skipped


def _readout(metric: Callable, ref, holdout, patients, synth, *, replace: bool, fraction: float,
             n_boot: int, seed: int) -> MetricReadout:
    fl = real_floor(metric, ref, holdout, patients, n_boot=n_boot, seed=seed, replace=replace,
                    fraction=fraction)
    # the bootstrap's interval is centred on the value at the holdout's own size (its replicates
    # vary in size with the patients drawn); a subsample's on replicates of `size` rows
    n = fl.n_candidate if replace else fl.size
    if synth.shape[0] < n:
        raise ValueError(f"{synth.shape[0]} synthetic images; the floor was measured at {n}: "
                         "give at least as many")
    return MetricReadout(as_numbers(metric(ref, synth[:n])), fl)


def fidelity_diversity(train: np.ndarray, holdout: np.ndarray, synthetic: np.ndarray, *,
                       embed: Callable[[np.ndarray], np.ndarray], holdout_patients: Any = None,
                       k: int = 5, n_pairs: int = 500, n_boot: int = 20, seed: int = 0,
                       slicewise: bool = False,
                       train_labels: Any = None, holdout_labels: Any = None, synthetic_labels: Any = None,
                       label_names: Sequence[str] | None = None, none_label: str | None = None,
                       min_group: int = 20) -> FidelityDiversity:
    """All fidelity / diversity numbers of `synthetic` against real `train`, floors from `holdout`.

    Images are (N, H, W) or, with `slicewise`, volumes (N, D, H, W) read through 2D slices.
    Labels (one key per image, or multi-hot with `label_names`) add a per-condition read-out;
    a condition with fewer than `min_group` images on a side is named with the reason, not scored.
    """
    train, holdout, synthetic = (np.asarray(a, np.float32) for a in (train, holdout, synthetic))
    feats = (lambda x: slicewise_features(x, embed)) if slicewise else embed
    # MS-SSIM is a 2D instrument: volumes are read through slices whatever the feature space
    # (a 3D encoder takes them whole for the Fréchet distance and PRDC)
    div = (lambda x: slicewise_diversity(x, n_pairs=n_pairs, seed=seed)) if synthetic.ndim == 4 else \
        (lambda x: diversity(x, n_pairs=n_pairs, seed=seed))
    f_tr, f_ho, f_sy = (np.asarray(feats(x), np.float64) for x in (train, holdout, synthetic))
    out = _score(f_tr, f_ho, f_sy, holdout, synthetic, holdout_patients, div, k, n_boot, seed)
    if synthetic_labels is None:
        return out
    masks = [group_masks(lab, label_names, none_label) for lab in (train_labels, holdout_labels,
                                                                   synthetic_labels)]
    by = {}
    pat = np.asarray(holdout_patients) if holdout_patients is not None else np.arange(holdout.shape[0])
    for name in sorted(set().union(*masks)):
        mt, mh, ms = (m.get(name, np.zeros(n, bool)) for m, n in
                      zip(masks, (train.shape[0], holdout.shape[0], synthetic.shape[0])))
        sizes = (int(mt.sum()), int(mh.sum()), int(ms.sum()))
        if min(sizes) < min_group:
            by[name] = (f"too few images (train {sizes[0]}, holdout {sizes[1]}, synthetic {sizes[2]}; "
                        f"need {min_group} each)")
            continue
        try:
            by[name] = _score(f_tr[mt], f_ho[mh], f_sy[ms], holdout[mh], synthetic[ms], pat[mh], div,
                              k, n_boot, seed)
        except ValueError as err:  # too few patients to subsample, k too large: say which
            by[name] = str(err)
    return FidelityDiversity(out.frechet, out.prdc, out.ms_ssim, by)


def holdout_within(patients: Any, n_rows: int, limit: int, seed: int) -> np.ndarray:
    """Rows of whole holdout patients, drawn in a seeded order, as many as fit in `limit` rows
    (all rows when they fit). A cohort is compared at its floor's size, so the floor is measured
    on no more holdout images than the synthetic set has."""
    if n_rows <= limit:
        return np.arange(n_rows)
    groups = patient_groups(patients, n_rows)
    keep, total = [], 0
    for g in np.random.default_rng(seed).permutation(len(groups)):
        if total + groups[g].size <= limit:
            keep.append(groups[g])
            total += groups[g].size
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def _score(f_tr, f_ho, f_sy, holdout, synthetic, patients, div, k, n_boot, seed) -> FidelityDiversity:
    patients = np.arange(holdout.shape[0]) if patients is None else np.asarray(patients)
    rows = holdout_within(patients, holdout.shape[0], synthetic.shape[0], seed)
    if rows.size < holdout.shape[0]:
        f_ho, holdout, patients = f_ho[rows], holdout[rows], patients[rows]
    if len(patient_groups(patients, holdout.shape[0])) < 4:
        raise ValueError(f"fewer than 4 holdout patients within the {synthetic.shape[0]} synthetic "
                         "images' size: no floor can be measured")
    fd = _readout(lambda a, b: frechet_distance(a, b), f_tr, f_ho, patients, f_sy, replace=True,
                  fraction=1.0, n_boot=n_boot, seed=seed)
    pr = _readout(lambda a, b: prdc(a, b, k=k), f_tr, f_ho, patients, f_sy, replace=False,
                  fraction=0.5, n_boot=n_boot, seed=seed)
    ms = _readout(lambda _a, b: div(b), holdout, holdout, patients, synthetic, replace=False,
                  fraction=0.5, n_boot=n_boot, seed=seed)
    return FidelityDiversity(fd, pr, ms)
