"""Images for a person to look at: 2D views, one tiler, 8-bit greyscale PNGs.

The one place that lays images out in a grid and turns [0, 1] floats into PNG bytes, shared by
the training sample grids, the evaluation's contact sheets, `synthmed inspect` and the audit
report. It imports nothing from synthmed but the atomic writer, so every layer can use it.

2D images are shown as they are. `tile` shows a 3D volume (D, H, W) as its three orthogonal
middle slices side by side (axial, coronal, sagittal), each centred on a square cell of side
max(D, H, W), so odd shapes still line up; `view_2d` shows only its middle (axial) slice.
Values are clipped to [0, 1] and not rescaled, so real and synthetic images compare by eye.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from synthmed.io.atomic import write_bytes


def view_2d(image: np.ndarray) -> np.ndarray:
    """A 2D view of one image: the middle slice of the first axis until two axes are left."""
    a = np.asarray(image, dtype=np.float32)
    while a.ndim > 2:
        a = a[a.shape[0] // 2]
    return a


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


def tile(images: np.ndarray, ncol: int | None = None, pad: int = 2, pad_value: float = 1.0,
         border: int | None = None) -> np.ndarray:
    """Tile (N, H, W) or (N, D, H, W) images (values in [0, 1]) into one 2D float array.

    `pad` pixels between cells, `border` (default: `pad`) around the sheet, both `pad_value`.
    ncol defaults to a roughly square sheet."""
    a = np.asarray(images, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4:
        a = np.stack([middle_slices(v) for v in a])
    if a.ndim != 3 or a.shape[0] == 0:
        raise ValueError(f"expected a non-empty stack of 2D or 3D images; got shape {a.shape}")
    border = pad if border is None else border
    n, h, w = a.shape
    ncol = ncol or max(1, math.ceil(math.sqrt(n * h / w)))
    ncol = min(ncol, n)
    nrow = math.ceil(n / ncol)
    sheet = np.full((nrow * (h + pad) - pad + 2 * border, ncol * (w + pad) - pad + 2 * border),
                    pad_value, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        y, x = border + r * (h + pad), border + c * (w + pad)
        sheet[y:y + h, x:x + w] = a[i]
    return sheet


def to_uint8(image: np.ndarray, scale: int = 1) -> np.ndarray:
    """[0, 1] floats -> 8-bit grey (clipped, rounded); `scale` > 1 enlarges by pixel repetition."""
    a = np.asarray(image, dtype=np.float32)
    if scale > 1:
        a = np.kron(a, np.ones((scale, scale), dtype=np.float32))
    return np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)


def png_bytes(pixels, *, optimize: bool = False, pnginfo=None) -> bytes:
    """An 8-bit grey array (or a PIL image) as PNG bytes; `pnginfo`: text chunks to add."""
    from PIL import Image

    im = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.asarray(pixels, np.uint8))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=optimize, pnginfo=pnginfo)
    return buf.getvalue()


def save_png(pixels, path: str | Path, *, optimize: bool = False) -> Path:
    """Write an 8-bit grey array (or a PIL image) as a PNG, atomically."""
    write_bytes(path, png_bytes(pixels, optimize=optimize))
    return Path(path)


def save_grid(images: np.ndarray, path: str | Path, *, ncol: int | None = None, pad: int = 2,
              scale: int = 1) -> Path:
    """Write `images` as one 8-bit greyscale PNG contact sheet (white gaps), atomically;
    `scale` enlarges by pixel repetition."""
    return save_png(to_uint8(tile(images, ncol=ncol, pad=pad), scale), path, optimize=True)
