"""A PNG contact sheet of images, so a person can look at what a model makes.

2D images are tiled as they are; a 3D volume (D, H, W) becomes its three orthogonal middle
slices side by side (axial, coronal, sagittal), each centred on a square cell of side
max(D, H, W), so odd shapes still line up.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from synthmed.io.atomic import atomic_path


def middle_slices(volume: np.ndarray) -> np.ndarray:
    """(D, H, W) -> (S, 3S) strip of the three middle slices, S = max(D, H, W), zero padded."""
    v = np.asarray(volume, dtype=np.float32)
    d, h, w = v.shape
    side = max(v.shape)
    views = [v[d // 2], v[:, h // 2, :], v[:, :, w // 2]]
    strip = np.zeros((side, 3 * side), dtype=np.float32)
    for k, s in enumerate(views):
        top, left = (side - s.shape[0]) // 2, (side - s.shape[1]) // 2
        strip[top:top + s.shape[0], k * side + left:k * side + left + s.shape[1]] = s
    return strip


def tile(images: np.ndarray, ncol: int | None = None, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile (N, H, W) or (N, D, H, W) images (values in [0, 1]) into one 2D float array."""
    a = np.asarray(images, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4:
        a = np.stack([middle_slices(v) for v in a])
    if a.ndim != 3 or a.shape[0] == 0:
        raise ValueError(f"expected a non-empty stack of 2D or 3D images; got shape {a.shape}")
    n, h, w = a.shape
    ncol = ncol or max(1, math.ceil(math.sqrt(n * h / w)))
    ncol = min(ncol, n)
    nrow = math.ceil(n / ncol)
    sheet = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad), pad_value, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        sheet[y:y + h, x:x + w] = a[i]
    return sheet


def save_grid(images: np.ndarray, path: str | Path, *, ncol: int | None = None, pad: int = 2,
              scale: int = 1) -> Path:
    """Write `images` as one 8-bit greyscale PNG (atomically); `scale` enlarges by pixel repetition.

    Values are clipped to [0, 1] and not rescaled, so real and synthetic grids are comparable
    by eye.
    """
    sheet = tile(images, ncol=ncol, pad=pad)
    if scale > 1:
        sheet = np.kron(sheet, np.ones((scale, scale), dtype=np.float32))
    pixels = np.round(np.clip(sheet, 0.0, 1.0) * 255).astype(np.uint8)
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG", optimize=True)
    return path
