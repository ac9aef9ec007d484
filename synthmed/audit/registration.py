"""Aligned pixel distance: how close two images are after undoing a flip, rotation, crop and shift.

A copy of a training image that was flipped, rotated a few degrees, cropped and resized, shifted,
re-contrasted or made noisy is far from its source in raw pixel space and only approximately near
it in a learned encoder's space. Registering the copy onto each of a few candidate training images
and measuring what is left is a direct test: a copy leaves interpolation residue (a few % RMS), a
different patient leaves anatomy.

How (a discrete search, because gradient-based registration was ~5x slower per pair here:
grid_sample's backward pass is slow on CPUs). Cost: ~40 ms per query image (about 12 candidate
pairs) on a loaded 2-core CPU, see benchmarks/results_audit.md: minutes, not seconds, for 10k.

1. both images are downsampled to a small working grid (16 per axis for the search, 32 for the
   final distance) and compared after a common 3-voxel blur and the best affine intensity map
   (least squares, per pair): blind to brightness and contrast, nearly blind to gamma 0.8-1.25.
   (Rank-normalising each image, fully gamma-blind, was tried and rejected: a crop or shift changes
   the image's histogram, and the ranks of a shifted copy then no longer match its source's.)
2. a coarse-to-fine discrete search over transforms of the CANDIDATE (training) image: on a
   grid of half the size, left-right flip x rotation (0, +-8 deg) x zoom (crop-and-resize to 85 %)
   x shifts (+-15 %, 5 x 5) jointly, then a local round; on the search grid, three rounds of finer
   rotation / zoom / shift: ~620 warps at 8 px plus ~40 at 16 px per pair;
3. the distance is the RMS difference over the central 3/4 of the field of view (borders hold
   out-of-view fill after a crop or rotation), at the final working grid, for the best transform.

3D volumes use the same search with rotations about each axis in turn, on a reduced joint grid
(rotation 0, 3^3 shifts; rotation only in the local rounds).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

from synthmed.audit.augment import _rotation


def _prepare(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, *spatial) -> (N, 1, *small) area-downsampled so no axis exceeds `size`."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)
    target = tuple(min(size, s) for s in x.shape[2:])
    if tuple(x.shape[2:]) != target:
        x = F.interpolate(x, size=target, mode="area")
    return x


def _blur(x: torch.Tensor) -> torch.Tensor:
    """3-voxel box blur: bilinear resampling blurs by a sub-voxel-shift-dependent amount; comparing
    both images after a common blur removes most of that difference (measured: the residual of an
    exactly undone 1-voxel shift drops from ~0.03 to ~0.01 RMS at 16 px)."""
    sd = x.ndim - 2
    pad = F.pad(x, (1, 1) * sd, mode="replicate")
    return F.avg_pool2d(pad, 3, 1) if sd == 2 else F.avg_pool3d(pad, 3, 1)


def _residual(w: torch.Tensor, q: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean squared residual inside mask m after the best affine intensity map a*w + b
    (a clamped to [0.5, 2]): blind to brightness and contrast, and to gamma 0.8-1.25 up to ~0.01."""
    n = m.sum()
    dims = tuple(range(1, w.ndim))
    wc = (w - (w * m).sum(dims, keepdim=True) / n) * m
    qc = (q - (q * m).sum(dims, keepdim=True) / n) * m
    a = ((wc * qc).sum(dims, keepdim=True) / ((wc * wc).sum(dims, keepdim=True) + 1e-8)).clamp(0.5, 2.0)
    return ((qc - a * wc) ** 2).sum(dims) / n


def _mask(shape: tuple[int, ...]) -> torch.Tensor:
    m = torch.zeros(1, 1, *shape)
    sl = tuple(slice(s // 8, s - s // 8) for s in shape)
    m[(slice(None), slice(None)) + sl] = 1.0
    return m


def _warp(x: torch.Tensor, flip: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor,
          shift: torch.Tensor) -> torch.Tensor:
    """Warp x (P, 1, *s): output p samples x at scale * R(angle) @ diag(flip) @ p + shift."""
    sd = x.ndim - 2
    rot = _rotation(sd, angle)
    matrix = rot * scale.view(-1, 1, 1) * flip.unsqueeze(1)
    theta = torch.cat([matrix, shift.unsqueeze(-1)], dim=-1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _angles(sd: int, degrees: list[float]) -> list[torch.Tensor]:
    if sd == 2:
        return [torch.tensor(math.radians(a)) for a in degrees]
    out = []
    for axis in range(3):
        for a in degrees:
            if a == 0 and axis:
                continue
            v = torch.zeros(3)
            v[axis] = math.radians(a)
            out.append(v)
    return out


class _Search:
    """Batched discrete search: keeps the best transform per pair."""

    def __init__(self, q: torch.Tensor, c: torch.Tensor):
        self.q, self.c = _blur(q), c
        self.sd = q.ndim - 2
        self.mask = _mask(tuple(q.shape[2:]))
        p = q.shape[0]
        self.flip = torch.ones(p, self.sd)
        self.angle = torch.zeros(p) if self.sd == 2 else torch.zeros(p, 3)
        self.scale = torch.ones(p)
        self.shift = torch.zeros(p, self.sd)
        self.best = self._cost(self.flip, self.angle, self.scale, self.shift)

    def _cost(self, flip, angle, scale, shift) -> torch.Tensor:
        return _residual(_blur(_warp(self.c, flip, angle, scale, shift)), self.q, self.mask)

    def try_(self, flip=None, angle=None, scale=None, shift=None) -> None:
        p = self.q.shape[0]
        f = self.flip if flip is None else (flip if flip.ndim == 2 else flip.expand(p, -1))
        a = self.angle if angle is None else (angle.expand(p) if self.sd == 2 else angle.expand(p, -1))
        s = self.scale if scale is None else scale.expand(p)
        t = self.shift if shift is None else (shift if shift.ndim == 2 else shift.expand(p, -1))
        cost = self._cost(f, a, s, t)
        better = cost < self.best
        self.best = torch.where(better, cost, self.best)
        self.flip = torch.where(better[:, None], f, self.flip)
        self.angle = torch.where(better.view(-1, *([1] * (a.ndim - 1))), a, self.angle)
        self.scale = torch.where(better, s, self.scale)
        self.shift = torch.where(better[:, None], t, self.shift)

    def try_relative(self, d_angle=None, d_scale=None, d_shift=None) -> None:
        self.try_(angle=None if d_angle is None else self.angle + d_angle,
                  scale=None if d_scale is None else self.scale * d_scale,
                  shift=None if d_shift is None else self.shift + d_shift)


def _shift_grid(sd: int, step: float, n: int) -> list[torch.Tensor]:
    vals = [step * k for k in range(-n, n + 1)]
    return [torch.tensor(v, dtype=torch.float32) for v in itertools.product(vals, repeat=sd)
            if any(x != 0 for x in v)]


@torch.no_grad()
def aligned_distance(queries: np.ndarray, candidates: np.ndarray, *, search_size: int = 16,
                     final_size: int = 32, chunk: int = 4096) -> np.ndarray:
    """Aligned, intensity-blind RMS distance between paired images queries[i] and candidates[i].

    queries, candidates: (P, *spatial) in [0, 1]. Returns (P,) float64: RMS intensity residual
    (0 = identical up to the transforms searched; unrelated chest X-rays give ~0.06-0.2).
    """
    q_all = np.asarray(queries)
    c_all = np.asarray(candidates)
    if q_all.shape != c_all.shape:
        raise ValueError(f"queries {q_all.shape} and candidates {c_all.shape} must pair up")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see embeddings._one_thread: deterministic and faster when shared
    try:
        out = np.empty(q_all.shape[0], dtype=np.float64)
        for s in range(0, q_all.shape[0], chunk):
            out[s:s + chunk] = _align_chunk(q_all[s:s + chunk], c_all[s:s + chunk], search_size, final_size)
        return out
    finally:
        torch.set_num_threads(before)


def _align_chunk(q_np: np.ndarray, c_np: np.ndarray, search_size: int, final_size: int) -> np.ndarray:
    sd = q_np.ndim - 1
    # grid_sample's coordinate 0 is the LAST spatial axis: a left-right flip negates column 0
    mirror = torch.cat([torch.tensor([-1.0]), torch.ones(sd - 1)])
    # coarse level (half the search grid, a smoother cost landscape): a dense global search
    coarse = _Search(_prepare(q_np, max(4, search_size // 2)), _prepare(c_np, max(4, search_size // 2)))
    # mirror x rotation x zoom (crop-and-resize keeps 85-100 % of the field of view) x shifts up to
    # 15 % of it, searched jointly on a coarse grid: chosen one after the other, each compensated
    # for the others still unknown and the search went astray (measured on NIH chest X-rays)
    # In 3D the joint grid would be 2 x 7 x 4 x 125 warps; it is cut to rotation 0 and a 3^3 shift
    # grid (rotation is then found by the local rounds only: weaker, but 3D cohorts are small)
    joint_angles = [-8.0, 0.0, 8.0] if sd == 2 else [0.0]
    joint_shifts = _shift_grid(sd, 0.075, 2) if sd == 2 else _shift_grid(sd, 0.1, 1)
    for f in (torch.ones(sd), mirror):
        for a in _angles(sd, joint_angles):
            for z in (1.0, 0.95, 0.9, 0.85):
                for t in [torch.zeros(sd)] + joint_shifts:
                    coarse.try_(flip=f, angle=a, scale=torch.tensor(z), shift=t)
    for a in _angles(sd, [-4.0, 4.0]):
        coarse.try_relative(d_angle=a)
    # one more local round at the coarse level
    for t in _shift_grid(sd, 0.05, 1):
        coarse.try_relative(d_shift=t)
    for z in (0.95, 1.05):
        coarse.try_relative(d_scale=torch.tensor(z))
    for a in _angles(sd, [-5.0, -2.5, 2.5, 5.0]):
        coarse.try_relative(d_angle=a)
    # fine level: start from the coarse transform (coordinates are normalised, so it carries over)
    search = _Search(_prepare(q_np, search_size), _prepare(c_np, search_size))
    search.try_(flip=coarse.flip, angle=coarse.angle, scale=coarse.scale, shift=coarse.shift)
    for step in (1.0, 0.5, 0.25):
        for a in _angles(sd, [-4.0 * step, 4.0 * step]):
            search.try_relative(d_angle=a)
        for z in (1 - 0.04 * step, 1 + 0.04 * step):
            search.try_relative(d_scale=torch.tensor(z))
        for t in _shift_grid(sd, 0.05 * step, 1):
            search.try_relative(d_shift=t)
    # final distance at the finer grid with the transform found
    qf, cf = _prepare(q_np, final_size), _prepare(c_np, final_size)
    w = _blur(_warp(cf, search.flip, search.angle, search.scale, search.shift))
    d = _residual(w, _blur(qf), _mask(tuple(qf.shape[2:]))).sqrt()
    return d.double().numpy()
