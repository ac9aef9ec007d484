"""Diversity of an image set: mean MS-SSIM between random pairs of its images (MONAI's metric).

MS-SSIM (Wang et al. 2003) is 1 for identical images and falls towards 0 for unrelated ones, so a
set's mean pairwise MS-SSIM is *high* when its images look alike: a mode-collapsed generator scores
above the real-versus-real value, a diverse one at it (Odena et al. 2017 use it this way). Noise
lowers it (noisy images are alike in nothing), which is why it is read beside precision, not alone.

Scales and kernel: MONAI's defaults (5 scales, 11-px Gaussian, sigma 1.5) need images of at least
~176 px; a 64 x 64 image halved four times is 4 px, smaller than the kernel. `ms_ssim_settings`
keeps as many scales as leave the coarsest at least twice the kernel wide, with a 7-px kernel
(sigma 1.5, so the window still spans +-2 sigma): 3 scales at 64 px, 4 at 128, 5 from 224. The
weights are the first scales' weights of Wang et al. (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
renormalised to sum to 1, so values stay on MS-SSIM's [0, 1] scale. Values computed with
different settings are not comparable; `diversity` records the ones it used.

Pairs are drawn with a seeded generator (i != j, both uniform over the set), so the same set and
seed give the same number; volumes are read slice-wise (2.5D, `synthmed.evaluate.slices`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

WANG_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
KERNEL_SIZE = 7
KERNEL_SIGMA = 1.5


@dataclass(frozen=True)
class MsSsimSettings:
    scales: int
    kernel_size: int
    kernel_sigma: float
    weights: tuple[float, ...]


@dataclass(frozen=True)
class Diversity:
    ms_ssim: float        # mean over pairs: higher = less diverse
    ms_ssim_std: float    # spread over pairs (not an interval on the mean)
    n_pairs: int
    n_images: int
    settings: MsSsimSettings
    seed: int

    def as_dict(self) -> dict:
        return asdict(self)


def ms_ssim_settings(shape: tuple[int, ...], kernel_size: int = KERNEL_SIZE,
                     kernel_sigma: float = KERNEL_SIGMA) -> MsSsimSettings:
    """Scales that fit a 2D image of `shape`: the coarsest (side / 2^(scales-1)) at least
    2 * kernel_size, at most 5; MONAI also requires side // (scales-1)^2 > kernel_size - 1."""
    side = int(min(shape))
    scales = 1
    for n in range(5, 0, -1):
        if side / 2 ** (n - 1) >= 2 * kernel_size and (n == 1 or side // (n - 1) ** 2 > kernel_size - 1):
            scales = n
            break
    if side < kernel_size:
        raise ValueError(f"images of {tuple(shape)} are smaller than the {kernel_size}-px SSIM kernel")
    w = np.asarray(WANG_WEIGHTS[:scales], dtype=np.float64)
    return MsSsimSettings(scales, kernel_size, float(kernel_sigma), tuple(float(v) for v in w / w.sum()))


def pairwise_ms_ssim(a: np.ndarray, b: np.ndarray, settings: MsSsimSettings | None = None,
                     batch_size: int = 256) -> np.ndarray:
    """MS-SSIM of a[i] with b[i] for 2D images (N, H, W) in [0, 1]; (N,) float64."""
    import torch
    from monai.metrics import MultiScaleSSIMMetric

    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"give two (N, H, W) stacks of the same shape, got {a.shape} and {b.shape}")
    s = settings or ms_ssim_settings(a.shape[1:])
    metric = MultiScaleSSIMMetric(spatial_dims=2, data_range=1.0, kernel_size=s.kernel_size,
                                  kernel_sigma=s.kernel_sigma, weights=s.weights, reduction="none")
    out = []
    with torch.no_grad():
        for i in range(0, a.shape[0], batch_size):
            x = torch.from_numpy(np.ascontiguousarray(a[i:i + batch_size]))[:, None]
            y = torch.from_numpy(np.ascontiguousarray(b[i:i + batch_size]))[:, None]
            out.append(metric(x, y).reshape(-1).double().numpy())
    return np.concatenate(out)


def random_pairs(n: int, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n_pairs` index pairs (i, j), i != j, uniform over an n-set, from a seeded generator."""
    if n < 2:
        raise ValueError(f"diversity needs at least 2 images, got {n}")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, n_pairs)
    j = (i + rng.integers(1, n, n_pairs)) % n  # uniform over the other n - 1 images
    return i, j


def diversity(images: np.ndarray, n_pairs: int = 500, seed: int = 0,
              settings: MsSsimSettings | None = None) -> Diversity:
    """Mean MS-SSIM over `n_pairs` random pairs of distinct 2D images (N, H, W) in [0, 1]."""
    x = np.asarray(images, np.float32)
    if x.ndim != 3:
        raise ValueError(f"give 2D images as (N, H, W), got {x.shape}; "
                         "for volumes use synthmed.evaluate.slices.slicewise_diversity")
    s = settings or ms_ssim_settings(x.shape[1:])
    i, j = random_pairs(x.shape[0], int(n_pairs), seed)
    v = pairwise_ms_ssim(x[i], x[j], s)
    return Diversity(float(v.mean()), float(v.std()), int(n_pairs), int(x.shape[0]), s, int(seed))
