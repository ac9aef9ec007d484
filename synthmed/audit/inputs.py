"""The images of an audit, by role, read from a dataset folder and a cohort folder.

Members are the dataset's TRAIN patients; non-members its HOLDOUT patients; the REFERENCE images
(real non-members that are never evaluated) calibrate the attacks: the dataset's reference split,
topped up with half of the holdout patients when it is missing or too small. Every problem that
makes the inputs unauditable is one readable line (InputError).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synthmed.data.cohort import Cohort
from synthmed.data.dataset import Dataset
from synthmed.data.values import intensity_range
from synthmed.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from synthmed.audit.profile import AuditProfile


@dataclass
class Inputs:
    """The images of an audit, by role, with patient ids for the real ones."""

    train: np.ndarray
    holdout: np.ndarray
    reference: np.ndarray  # real non-members that calibrate the attacks (never evaluated)
    synthetic: np.ndarray
    train_patients: np.ndarray
    holdout_patients: np.ndarray
    spatial_dims: int
    extra: dict[str, Any] = field(default_factory=dict)
    reference_patients: np.ndarray | None = None  # for the identity network's verification pairs


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def load_inputs(dataset: Path, cohort: Path, profile: "AuditProfile", seed: int = 0) -> tuple[Inputs, Dataset, Cohort]:
    """Open both folders and check they can be audited; every problem is one readable line."""
    ds = Dataset.open(dataset)
    co = Cohort.open(cohort, intensity_range(ds.info))
    if tuple(co.shape) != tuple(ds.shape):
        raise InputError(f"{co.root}: cohort images are {shape_text(co.shape)} but the dataset's "
                         f"are {shape_text(ds.shape)}; sample the cohort at the dataset's shape")
    train_idx = ds.require_split("train")
    holdout_idx = ds.require_split("holdout")
    ref_idx = ds.indices("reference")
    pid = ds.patient_ids
    reference_source = "reference split"
    sizes = profile.sizes
    n_holdout = len(set(pid[holdout_idx].tolist()))
    # One holdout patient cannot be halved; the size check below then says what is missing.
    if n_holdout >= 2 and (ref_idx.size == 0 or (ref_idx.size < sizes.min_reference_images
                           and n_holdout - round(n_holdout / 2) >= sizes.min_holdout_patients)):
        # The attacks need real non-members to calibrate on that are NOT the evaluated ones
        # (synthmed.audit.attacks): without a reference split big enough to estimate a density or
        # a median distance (DOMIAS fits a 5-dim PCA + KDE on it), half the holdout patients join
        # it, when the holdout can spare them; otherwise the attacks adapt to the small reference
        # (VectorAttack.settings) or are reported as not evaluated.
        from synthmed.audit.attacks.measure import split_calibration

        cal, ev = split_calibration(pid[holdout_idx], 0.5, seed)
        reference_source = ("half of the holdout patients (the dataset has no reference split)"
                            if ref_idx.size == 0 else
                            f"the reference split ({ref_idx.size} images, fewer than "
                            f"sizes.min_reference_images = {sizes.min_reference_images}) and half of "
                            f"the holdout patients")
        ref_idx, holdout_idx = np.concatenate([ref_idx, holdout_idx[cal]]), holdout_idx[ev]
    for split, idx, minimum in (("train", train_idx, sizes.min_train_patients),
                                ("holdout", holdout_idx, sizes.min_holdout_patients)):
        n = len(set(pid[idx].tolist()))
        if n < minimum:
            extra = ("" if split == "train" or reference_source == "reference split" else
                     " after half of them were set aside to calibrate the attacks (no reference split)")
            raise InputError(f"{ds.root}: the '{split}' split has {n} patients{extra} but the audit "
                             f"needs at least {minimum} (profile key sizes.min_{split}_patients); "
                             f"re-ingest with a larger {split} split")
    if len(co) < sizes.min_synthetic_images:
        raise InputError(f"{co.root}: the cohort has {len(co)} images but the audit needs at least "
                         f"{sizes.min_synthetic_images} (profile key sizes.min_synthetic_images)")
    images = ds.images
    inputs = Inputs(
        train=np.asarray(images[train_idx], dtype=np.float32),
        holdout=np.asarray(images[holdout_idx], dtype=np.float32),
        reference=np.asarray(images[ref_idx], dtype=np.float32),
        synthetic=np.asarray(co.images, dtype=np.float32),
        train_patients=pid[train_idx], holdout_patients=pid[holdout_idx],
        spatial_dims=ds.spatial_dims,
        # all holdout patients, before any joined the reference: what "holdout patients needed"
        # counts (synthmed.audit.power.holdout_needed)
        extra={"reference_source": reference_source, "n_holdout_patients": n_holdout},
        reference_patients=pid[ref_idx])
    # The images' own conditions (labels, age, sex), by role: the white-box attacks query a
    # conditional model with them, as the hospital that holds both can.
    labels, ages, sexes = ds.label_matrix(), ds.ages(), ds.sexes()
    inputs.extra["conditions"] = {role: (labels[idx], ages[idx], sexes[idx]) for role, idx in
                                  (("train", train_idx), ("holdout", holdout_idx), ("reference", ref_idx))}
    return inputs, ds, co


__all__ = ["Inputs", "load_inputs", "shape_text"]
