"""`ModelTarget`: a trained run's denoiser as a white-box attacker queries it.

Every attack works in the space the denoiser was trained in: pixel models see images as
2x - 1 padded with -1 (as the trainer pads them), latent models see the run's own autoencoder's
latent means times the run's scale factor. So a latent model is attacked in latent space, where
its memorisation lives, and the attack never needs the decoder.

Noise is drawn per image from (seed, stream, a hash of the image's own values), so an image's
score does not depend on the batch it was scored in, nor on which other images were scored with
it (batch-invariant, seeded; up to float summation order).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Sequence

import numpy as np
import torch

from synthmed.errors import InputError
from synthmed.models.conditioning import Conditions, conditions_from_arrays, encode_conditions
from synthmed.models.network import pad_to
from synthmed.models.schedulers import training_scheduler


def _stream_seed(seed: int, stream: Sequence[int], index: int) -> int:
    return int(np.random.default_rng([int(seed), 17, *map(int, stream), int(index)]).integers(2**62))


class ModelTarget:
    """Queries of one `DiffusionModel`'s denoiser: eps predictions in the model's own space."""

    def __init__(self, model: Any):
        self.model = model
        self.net = model.net.eval()
        self.device = model.device
        sched_cfg = model.config.scheduler
        sched = training_scheduler(sched_cfg)
        self.alphas = sched.alphas_cumprod.to(torch.float64)
        self.T = int(sched_cfg.num_train_timesteps)
        self.prediction_type = sched_cfg.prediction_type
        self.latent = model.autoencoder is not None
        self.shape = tuple(model.shape)

    # ---- timesteps ------------------------------------------------------------------------
    def timestep(self, t_of_1000: int) -> int:
        """A timestep given on the 1000-step schedule, on this model's schedule."""
        return int(min(self.T - 1, max(0, round(t_of_1000 * self.T / 1000))))

    def alpha(self, t: int) -> float:
        return float(self.alphas[int(t)])

    # ---- inputs ---------------------------------------------------------------------------
    def conditions(self, n: int, labels: np.ndarray | None = None, ages: np.ndarray | None = None,
                   sexes: np.ndarray | None = None) -> Conditions:
        """The images' own conditions when given (rows of the dataset), else the null condition."""
        if labels is None:
            return encode_conditions(None, n, self.model.label_vocabulary)
        return conditions_from_arrays(labels, ages, sexes)

    @torch.no_grad()
    def encode(self, images: np.ndarray, batch_size: int = 64) -> torch.Tensor:
        """Images float (n, *shape) in [0, 1] -> x0 in the denoiser's space, (n, C, *model_shape)."""
        images = np.asarray(images, dtype=np.float32)
        if tuple(images.shape[1:]) != self.shape:
            raise InputError(f"the model was trained on {'x'.join(map(str, self.shape))} images but "
                             f"the audited images are {'x'.join(map(str, images.shape[1:]))}")
        info = self.model.info
        pixels = torch.from_numpy(np.clip(images, 0, 1))[:, None] * 2 - 1
        if not self.latent:
            return pad_to(pixels, tuple(info["model_shape"]), -1.0)
        pix_shape = tuple(info["latent"]["pixel_shape"])
        scale = float(info["latent"]["scale_factor"])
        ae = self.model.autoencoder.eval()
        out = []
        for s in range(0, pixels.shape[0], batch_size):
            x = pad_to(pixels[s:s + batch_size], pix_shape, -1.0).to(self.device)
            out.append(ae.encode(x)[0].float().cpu() * scale)  # the mean, as the trainer encodes
        return torch.cat(out) if out else torch.empty((0, int(info["in_channels"]), *info["model_shape"]))

    def noise(self, like: torch.Tensor, index: np.ndarray, seed: int, stream: Sequence[int]) -> torch.Tensor:
        """Standard normal noise shaped like `like`, row i drawn from (seed, stream, index[i])
        (`batched` passes each image's key)."""
        rows = [torch.randn(like.shape[1:], generator=torch.Generator().manual_seed(
            _stream_seed(seed, stream, int(i)))) for i in index]
        return torch.stack(rows).to(like.device, like.dtype)

    # ---- the query ------------------------------------------------------------------------
    @torch.no_grad()
    def eps(self, x_t: torch.Tensor, t: int, cond: Conditions) -> torch.Tensor:
        """The denoiser's noise prediction at (x_t, t), whatever its training target."""
        tt = torch.full((x_t.shape[0],), int(t), dtype=torch.long, device=self.device)
        out = self.net(x_t.to(self.device), tt, cond.to(self.device)).float()
        if self.prediction_type == "epsilon":
            return out
        a = self.alpha(t)  # v = sqrt(a) eps - sqrt(1 - a) x0  =>  eps = sqrt(a) v + sqrt(1 - a) x_t
        return math.sqrt(a) * out + math.sqrt(1.0 - a) * x_t.to(self.device)

    def ddim_step(self, x: torch.Tensor, s: int, s_next: int, cond: Conditions) -> torch.Tensor:
        """Deterministic DDIM move from timestep s to s_next (either direction)."""
        e = self.eps(x, s, cond)
        a, a2 = self.alpha(s), self.alpha(s_next)
        x0 = (x.to(self.device) - math.sqrt(1 - a) * e) / math.sqrt(a)
        return math.sqrt(a2) * x0 + math.sqrt(1 - a2) * e


def image_keys(x0: torch.Tensor) -> np.ndarray:
    """One 63-bit key per image, from its values: the noise an attack draws for it."""
    rows = x0.detach().cpu().contiguous().numpy()
    return np.array([int.from_bytes(hashlib.sha256(r.tobytes()).digest()[:8], "little") >> 1
                     for r in rows], dtype=np.int64)


def per_image(x: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the first."""
    return x.flatten(1).mean(1)


def batched(x0: torch.Tensor, cond: Conditions, batch_size: int, fn) -> np.ndarray:
    """fn(x0_batch, cond_batch, image_keys) -> (b,) scores, over the whole set in batches."""
    n = x0.shape[0]
    keys = image_keys(x0)
    out = np.empty(n, dtype=np.float64)
    for s in range(0, n, batch_size):
        idx = np.arange(s, min(n, s + batch_size))
        out[idx] = fn(x0[idx], cond.select(torch.from_numpy(idx)), keys[idx]).double().cpu().numpy()
    return out
