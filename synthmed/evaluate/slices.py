"""Slice-wise (2.5D) versions of the 2D metrics for volumes (N, D, H, W).

The 2D instruments (MS-SSIM, a 2D encoder's features) read a volume through slices of its three
orthogonal planes: axial (axis 0), coronal (1) and sagittal (2), `per_axis` evenly spaced slices
each, avoiding the outer 20 % of each axis where most volumes are background. A volume stays one
unit: its slices' features are concatenated into one vector per volume (so k-NN and Fréchet
metrics still count volumes, i.e. patients, not slices), and MS-SSIM diversity compares the *same*
slice position of two different volumes, then averages over positions and planes.

Slices of different planes have different shapes when the volume is not a cube; each plane is
scored on its own, so that is fine. A 3D encoder (the audit's ContrastiveEncoder with
spatial_dims=3) is the alternative for features; this module is for 2D instruments.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from synthmed.evaluate.diversity import Diversity, diversity, ms_ssim_settings, pairwise_ms_ssim, random_pairs


def slice_positions(length: int, per_axis: int, margin: float = 0.2) -> np.ndarray:
    """`per_axis` evenly spaced indices in [margin, 1 - margin] of an axis of `length`."""
    lo, hi = margin * (length - 1), (1 - margin) * (length - 1)
    return np.unique(np.linspace(lo, hi, per_axis).round().astype(int))


def plane_slices(volumes: np.ndarray, axis: int, per_axis: int = 3) -> np.ndarray:
    """(N, S, h, w): `per_axis` slices of each volume across `axis` (0, 1 or 2 of D, H, W)."""
    v = np.asarray(volumes)
    if v.ndim != 4:
        raise ValueError(f"give volumes as (N, D, H, W), got shape {v.shape}")
    pos = slice_positions(v.shape[axis + 1], per_axis)
    return np.moveaxis(np.take(v, pos, axis=axis + 1), axis + 1, 1)


def slicewise_features(volumes: np.ndarray, embed: Callable[[np.ndarray], np.ndarray],
                       per_axis: int = 3, axes: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """One vector per volume: `embed` (2D images (n, h, w) -> (n, d)) of its slices, concatenated.

    `embed` is called once per plane with that plane's slice shape, so it must accept it (a 2D
    encoder made for one shape is applied to cube volumes, or resize first)."""
    parts = []
    for ax in axes:
        s = plane_slices(volumes, ax, per_axis)
        n, k = s.shape[:2]
        f = np.asarray(embed(s.reshape(n * k, *s.shape[2:])))
        parts.append(f.reshape(n, -1))
    return np.concatenate(parts, axis=1)


def slicewise_diversity(volumes: np.ndarray, n_pairs: int = 200, seed: int = 0, per_axis: int = 3,
                        axes: tuple[int, ...] = (0, 1, 2)) -> Diversity:
    """Mean MS-SSIM between the same slice of two different volumes, over random volume pairs,
    slice positions and planes. Settings are those of the smallest plane (recorded)."""
    v = np.asarray(volumes, np.float32)
    i, j = random_pairs(v.shape[0], int(n_pairs), seed)
    values, settings = [], None
    shapes = [plane_slices(v[:1], ax, per_axis).shape[2:] for ax in axes]
    settings = ms_ssim_settings(min(shapes, key=min))
    for ax in axes:
        s = plane_slices(v, ax, per_axis)
        for p in range(s.shape[1]):
            values.append(pairwise_ms_ssim(s[i, p], s[j, p], settings))
    a = np.concatenate(values)
    return Diversity(float(a.mean()), float(a.std()), int(n_pairs), int(v.shape[0]), settings, int(seed))


