"""Per-condition read-outs: the same metric on the images of each condition, real against synthetic.

A cohort can match the real set overall and still miss a finding (all effusions look alike, the
rare label never appears), so every fidelity / diversity metric is also reported per condition.
Conditions come from a label vector: either one key per image (a finding, a sex, an age group:
any hashable value), or a multi-hot matrix (N, L) with one column per label, where an image belongs
to every label it carries and, with `none_label`, images carrying none form their own group
("No Finding"). A group too small for the metric is reported as skipped with its size, never
silently dropped (fail closed: a missing number is visible).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class GroupResult:
    name: str
    n_real: int
    n_synthetic: int
    result: Any = None          # the metric's result; None when skipped
    skipped: str | None = None  # why it was not computed


def group_masks(labels: Any, names: Sequence[str] | None = None,
                none_label: str | None = None) -> dict[str, np.ndarray]:
    """{group name: boolean mask over images} from a key vector (N,) or a multi-hot matrix (N, L)."""
    a = np.asarray(labels)
    if a.ndim == 1:
        keys = sorted({str(v) for v in a.tolist()})
        return {k: np.array([str(v) == k for v in a.tolist()]) for k in keys}
    if a.ndim != 2:
        raise ValueError(f"labels must be (N,) keys or an (N, L) multi-hot matrix, got shape {a.shape}")
    if names is None or len(names) != a.shape[1]:
        raise ValueError(f"a multi-hot matrix needs one name per column ({a.shape[1]}), got {names!r}")
    hot = a.astype(bool)
    out = {str(n): hot[:, i] for i, n in enumerate(names)}
    if none_label is not None:
        out[none_label] = ~hot.any(1)
    return out


def per_group(metric: Callable[[np.ndarray, np.ndarray], Any], real: np.ndarray, real_labels: Any,
              synthetic: np.ndarray, synthetic_labels: Any, names: Sequence[str] | None = None,
              none_label: str | None = None, min_size: int = 2) -> dict[str, GroupResult]:
    """`metric(real[group], synthetic[group])` for every group present in either label set.

    Synthetic labels are what each image was asked to be (the cohort manifest), real labels the
    dataset's. Groups with fewer than `min_size` images on either side are skipped, with the reason.
    """
    real, synthetic = np.asarray(real), np.asarray(synthetic)
    rm = group_masks(real_labels, names, none_label)
    sm = group_masks(synthetic_labels, names, none_label)
    for what, m, x in (("real", rm, real), ("synthetic", sm, synthetic)):
        for mask in m.values():
            if mask.shape[0] != x.shape[0]:
                raise ValueError(f"{what}: {mask.shape[0]} labels for {x.shape[0]} images")
    out = {}
    for name in sorted(set(rm) | set(sm)):
        r = rm.get(name, np.zeros(real.shape[0], bool))
        s = sm.get(name, np.zeros(synthetic.shape[0], bool))
        nr, ns = int(r.sum()), int(s.sum())
        if min(nr, ns) < min_size:
            out[name] = GroupResult(name, nr, ns, None,
                                    f"too few images (real {nr}, synthetic {ns}; need {min_size} each)")
            continue
        try:
            out[name] = GroupResult(name, nr, ns, metric(real[r], synthetic[s]))
        except ValueError as err:  # e.g. PRDC with k >= group size: say so, keep the others
            out[name] = GroupResult(name, nr, ns, None, str(err))
    return out
