"""Small vectorised building blocks for analytic phantoms (soft masks, blobs, smoothed noise).

The phantoms are drawn from smooth implicit functions evaluated on coordinate grids, rather than
from a mesh or a voxel atlas: evaluating a handful of numpy expressions per organ is fast enough to
write hundreds of patients a second, and every parameter of every organ stays a plain number that
can differ per patient (the anatomical fingerprint) and per study (pose, breathing).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def soft(d: np.ndarray, width: float) -> np.ndarray:
    """0 -> 1 ramp across d = 0, about `width` wide (a partial-volume edge).

    A clipped linear ramp rather than tanh: several times cheaper per pixel, and the detector
    blur applied at the end rounds its corners anyway.
    """
    t = d * (0.5 / width)
    t += 0.5
    np.minimum(t, 1.0, out=t)
    np.maximum(t, 0.0, out=t)
    return t


def ellipse_inside(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float,
                   square: float = 0.0) -> np.ndarray:
    """Signed inside-ness of an ellipse: 1 at the centre, 0 on the edge, negative outside.

    `square` in [0, 1] blends the ellipse (x^2 + y^2) towards a rounded box (x^4 + y^4). It
    plays the role of a superellipse exponent without a per-pixel pow(), which is ~20x slower.
    """
    dx = (x - cx) * (1.0 / rx)
    dy = (y - cy) * (1.0 / ry)
    dx *= dx
    dy *= dy
    if square:
        quartic = dx * dx
        quartic += dy * dy
        dx += dy
        dx *= 1.0 - square
        quartic *= square
        dx += quartic
    else:
        dx += dy
    return np.subtract(1.0, dx, out=dx)


def bilinear(maps: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sample (C, H, W) maps at fractional (rows, cols), zero outside: (C, *rows.shape).

    Written out with numpy gathers because scipy's map_coordinates/affine_transform go through
    a generic per-point path that is several times slower for this small, linear case.
    """
    _, h, w = maps.shape
    r0 = np.floor(rows)
    c0 = np.floor(cols)
    fr = rows - r0
    fc = cols - c0
    r0 = r0.astype(np.intp)
    c0 = c0.astype(np.intp)
    inside = (r0 >= 0) & (r0 < h - 1) & (c0 >= 0) & (c0 < w - 1)
    idx = np.where(inside, r0 * w + c0, 0)
    out = []
    for m in maps.reshape(len(maps), h * w):
        top = m.take(idx)
        top += (m.take(idx + 1) - top) * fc
        bottom = m.take(idx + w)
        bottom += (m.take(idx + w + 1) - bottom) * fc
        top += (bottom - top) * fr
        out.append(top * inside)
    return np.stack(out)


def depth(inside: np.ndarray) -> np.ndarray:
    """Projected thickness of a convex body through its 2D silhouette (sqrt profile of a sphere)."""
    return np.sqrt(np.maximum(inside, 0.0))


def rotate(x: np.ndarray, y: np.ndarray, cx: float, cy: float, angle: float
           ) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(angle), math.sin(angle)  # Python floats: arrays stay float32
    dx, dy = x - cx, y - cy
    return c * dx + s * dy, -s * dx + c * dy


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise, rescaled to unit standard deviation (a tissue texture)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma,
                                    mode="wrap")
    return field / max(float(field.std()), 1e-6)


def splat(shape: tuple[int, int], points: np.ndarray, weights: np.ndarray, sigma: float
          ) -> np.ndarray:
    """Draw many small gaussian dots at once: accumulate them on the grid, then blur once."""
    img = np.zeros(shape, np.float32)
    ij = np.round(points).astype(np.int64)
    ok = (ij[:, 0] >= 0) & (ij[:, 0] < shape[0]) & (ij[:, 1] >= 0) & (ij[:, 1] < shape[1])
    np.add.at(img, (ij[ok, 0], ij[ok, 1]), weights[ok].astype(np.float32))
    return ndimage.gaussian_filter(img, sigma)
