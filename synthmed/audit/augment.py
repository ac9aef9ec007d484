"""Image transforms for the audit, in torch, for 2D and 3D alike (explicit `spatial_dims`).

Two uses:

* `random_views` draws the random augmentations a contrastive encoder is trained to ignore
  (flips, small rotations, shifts, crop-and-resize, gamma, noise), so that a transformed copy of a
  training image still lands next to it in the encoder's space;
* `transform_copy` applies ONE named, deterministic-given-seed transform to numpy images; the audit
  tests and benchmarks use it to plant disguised copies of training images in a cohort.

Written here rather than taken from MONAI's transforms because those work one image at a time
on the CPU; a batch is one `affine_grid` + `grid_sample` call, which is what makes training the
encoder fast enough on a laptop. Images are tensors (B, C, *spatial) in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

COPY_KINDS = ("exact", "flip", "rotate", "shift", "crop_resize", "gamma", "noise")


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of the training augmentations (also the disguises the encoder learns to see through)."""

    flip_p: float = 0.5          # per spatial axis
    max_rotation_deg: float = 12.0
    max_shift: float = 0.08      # fraction of the field of view
    min_crop: float = 0.75       # crop-and-resize: keep at least this fraction of each axis
    gamma_range: tuple[float, float] = (0.7, 1.4)
    max_noise_std: float = 0.04


def _rotation(spatial_dims: int, angles: torch.Tensor) -> torch.Tensor:
    """(B, d, d) rotation matrices; 2D: angles (B,), 3D: angles (B, 3) about the three axes."""
    if spatial_dims == 2:
        c, s = torch.cos(angles), torch.sin(angles)
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    r = torch.eye(3, dtype=angles.dtype).expand(angles.shape[0], 3, 3)
    for axis in range(3):
        a = angles[:, axis]
        c, s = torch.cos(a), torch.sin(a)
        i, j = [k for k in range(3) if k != axis]
        m = torch.eye(3, dtype=angles.dtype).repeat(angles.shape[0], 1, 1)
        m[:, i, i], m[:, i, j], m[:, j, i], m[:, j, j] = c, -s, s, c
        r = r @ m
    return r


def affine_warp(x: torch.Tensor, matrix: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Resample x (B, C, *spatial) at output coordinates p -> matrix @ p + shift (normalised [-1, 1]).

    A matrix with scale < 1 zooms in (crop-and-resize). Out-of-view samples take the value 0.
    """
    theta = torch.cat([matrix, shift.unsqueeze(-1)], dim=-1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_views(x: torch.Tensor, spatial_dims: int, generator: torch.Generator,
                 cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """One random augmented view of every image in x (B, C, *spatial), values kept in [0, 1]."""
    if x.ndim != spatial_dims + 2:
        raise ValueError(f"expected (B, C, *spatial) with {spatial_dims} spatial dims, got {tuple(x.shape)}")
    b = x.shape[0]
    g = generator

    def u(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g)

    # flips: sign of each axis in the affine matrix (a flip is the matrix diag(-1))
    flips = torch.where(u(b, spatial_dims) < cfg.flip_p, -1.0, 1.0)
    max_rot = math.radians(cfg.max_rotation_deg)
    angles = (u(b) if spatial_dims == 2 else u(b, 3)) * 2 * max_rot - max_rot
    # crop-and-resize: sample a sub-window of relative size `scale` per axis (same for all axes,
    # so the aspect ratio stays), placed anywhere inside the image, then stretch to full size
    scale = cfg.min_crop + (1 - cfg.min_crop) * u(b, 1)
    centre = (1 - scale) * (2 * u(b, spatial_dims) - 1)
    shift = centre + cfg.max_shift * 2 * (2 * u(b, spatial_dims) - 1)
    matrix = _rotation(spatial_dims, angles) * scale.unsqueeze(-1) * flips.unsqueeze(1)
    out = affine_warp(x, matrix, shift)
    lo, hi = (math.log(v) for v in cfg.gamma_range)
    gamma = torch.exp(lo + (hi - lo) * u(b)).view(b, *([1] * (x.ndim - 1)))
    out = out.clamp(0, 1) ** gamma
    noise_std = (cfg.max_noise_std * u(b)).view(b, *([1] * (x.ndim - 1)))
    out = out + noise_std * torch.randn(out.shape, generator=g)
    return out.clamp(0, 1)


def transform_copy(images: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """A disguised copy of each image (N, *spatial) in [0, 1]: one named transform, seeded.

    kinds: exact; flip (last spatial axis, i.e. left-right); rotate (5-10 degrees, random sign);
    shift (3-6 % of the field of view); crop_resize (keep 85-92 % per axis, resize back);
    gamma (0.8 or 1.25); noise (Gaussian, std 0.02). These are the "small" edits a copy
    detector must see through; they are milder than the training augmentations on purpose.
    """
    if kind not in COPY_KINDS:
        raise ValueError(f"unknown copy kind {kind!r}; choose one of {', '.join(COPY_KINDS)}")
    imgs = np.asarray(images, dtype=np.float32)
    if kind == "exact":
        return imgs.copy()
    if kind == "flip":
        return np.ascontiguousarray(imgs[..., ::-1])
    rng = np.random.default_rng(seed)
    n, sd = imgs.shape[0], imgs.ndim - 1
    if kind == "gamma":
        g = rng.choice([0.8, 1.25], size=n).reshape(n, *([1] * sd))
        return (imgs.clip(0, 1) ** g).astype(np.float32)
    if kind == "noise":
        return (imgs + rng.normal(0, 0.02, imgs.shape)).clip(0, 1).astype(np.float32)
    x = torch.from_numpy(imgs).unsqueeze(1)
    eye = torch.eye(sd).expand(n, sd, sd)
    shift = torch.zeros(n, sd)
    if kind == "rotate":
        ang = torch.from_numpy(rng.uniform(5, 10, n) * rng.choice([-1, 1], n)).float()
        ang = torch.deg2rad(ang)
        matrix = _rotation(sd, ang if sd == 2 else torch.stack([ang, 0 * ang, 0 * ang], -1))
    elif kind == "shift":
        matrix = eye
        shift = torch.from_numpy(2 * rng.uniform(0.03, 0.06, (n, sd)) * rng.choice([-1, 1], (n, sd))).float()
    else:  # crop_resize
        s = torch.from_numpy(rng.uniform(0.85, 0.92, (n, 1, 1))).float()
        matrix = eye * s
        shift = torch.from_numpy(rng.uniform(-1, 1, (n, sd))).float() * (1 - s[:, :, 0])
    # border: replicate the edge rather than pad with black, as an image editor would
    theta = torch.cat([matrix, shift.unsqueeze(-1)], dim=-1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.squeeze(1).clamp(0, 1).numpy().astype(np.float32)
