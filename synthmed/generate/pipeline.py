"""The sampling pipeline: one object that owns a trained model's components and samples.

diffusers style: `DiffusionPipeline` holds the denoiser, the autoencoder (latent runs), the
training config (whose scheduler section builds the sampling scheduler) and the model
description; `DiffusionPipeline.from_run(run)` (= `synthmed.models.load(run)`) loads a run folder;
`sample(...)` resolves its defaults once (`synthmed.models.sampling.resolve_sampling`) and
returns a `SampleOutput` saying what ran. `denoise` is the reverse-process loop itself, short on
purpose; the network, the scheduler and the conditions come in from outside.

`models/` knows nothing of this module: networks, configs and schedulers live there, and this
module puts them together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from synthmed.errors import InputError, SynthmedError
from synthmed.models.conditioning import Conditions, encode_conditions
from synthmed.models.config import TrainConfig
from synthmed.models.diffusion import load_components, pick_device
from synthmed.models.network import crop_to, pad_to
from synthmed.models.sampling import SampleOutput, resolve_sampling
from synthmed.models.schedulers import sampling_scheduler


def sample_seed(seed: int, index: int) -> int:
    return int(np.random.default_rng([seed, 2, index]).integers(2**62))


def sdedit_steps(steps: int, strength: float) -> int:
    """Denoising steps an SDEdit pass takes: the last `strength` of a `steps`-step schedule
    (at least one)."""
    return min(max(int(round(steps * strength)), 1), steps)


@dataclass(frozen=True)
class Denoised:
    """What `denoise` returns: the samples (model space), the denoising steps taken, and (when
    asked with `noise_at`) each sample's own noise at that SDEdit start."""

    x: torch.Tensor
    steps: int
    noise: torch.Tensor | None = None


def _alpha_sigma(scheduler, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The scheduler's own signal and noise scales at `t`, read through its `add_noise`, so they
    are the ones an SDEdit start at `t` uses whatever the scheduler's parametrisation."""
    one, zero = torch.ones_like(like[:1]), torch.zeros_like(like[:1])
    return scheduler.add_noise(one, zero, t[:1]), scheduler.add_noise(zero, one, t[:1])


@torch.no_grad()
def denoise(net: torch.nn.Module, scheduler, cond: Conditions, shape: Sequence[int],
            generators: list[torch.Generator], steps: int, guidance_scale: float,
            device: torch.device, init: torch.Tensor | None = None,
            strength: float = 1.0, init_noise: torch.Tensor | None = None, fresh: float = 1.0,
            noise_at: float | None = None) -> Denoised:
    """Run the reverse process for a batch. One generator per sample, so sample i depends only
    on its own seed and condition, not on what else is in the batch.

    `init` (model space, like a sample): SDEdit. It is noised to the timestep a fraction
    `strength` of the way up the `steps`-step schedule and denoised from there, as diffusers'
    img2img pipelines do, so the result keeps what survived the noise and takes the conditions
    of `cond`. The noise is `init_noise` blended with a fresh draw, `fresh` being the fresh
    draw's share of the variance (1, or no `init_noise`: classic SDEdit, all fresh).

    `noise_at` (a strength): also return each sample's implied noise at that SDEdit start,
    (x_t - alpha_t x_0) / sigma_t from the state x_t its own sampling passed through and its
    result x_0. An SDEdit of its result with that noise starts from that very state, so with
    unchanged conditions it gives the sample back: a fresh draw at x_t's noise level would
    instead redraw what the noise hides there, part of the anatomy included."""
    noise = randn_tensor(tuple(shape), generator=generators, device=torch.device("cpu")).to(device)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    capture = None if noise_at is None else (steps - sdedit_steps(steps, noise_at)) * scheduler.order
    if init is None:
        x = noise * scheduler.init_noise_sigma
    else:
        keep = sdedit_steps(steps, strength)
        start = (steps - keep) * scheduler.order
        timesteps = timesteps[start:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        if init_noise is not None and fresh < 1.0:
            noise = math.sqrt(1.0 - fresh) * init_noise.to(device) + math.sqrt(fresh) * noise
        x = scheduler.add_noise(init.to(device), noise, timesteps[:1].repeat(shape[0]))
        capture = None if capture is None else capture - start
    cond = cond.to(device)
    any_known = bool((cond.labels_known | cond.age_known | cond.sex_known).any())
    guided = any_known and guidance_scale != 1.0
    if guided:
        both = Conditions.cat([cond, cond.null()])
    ran, state = 0, None
    for i, t in enumerate(timesteps):
        if i == capture:
            state = x.clone()
            alpha, sigma = _alpha_sigma(scheduler, t.reshape(1), x)
        ran += 1
        x_in = scheduler.scale_model_input(x, t)
        t_batch = torch.full((x.shape[0],), int(t), device=device, dtype=torch.long)
        if guided:
            out = net(torch.cat([x_in, x_in]), torch.cat([t_batch, t_batch]), both).float()
            out_cond, out_uncond = out.chunk(2)
            out = out_uncond + guidance_scale * (out_cond - out_uncond)
        else:
            out = net(x_in, t_batch, cond).float()
        x = scheduler.step(out, t, x, generator=generators).prev_sample
    implied = None if state is None else (state - alpha * x) / sigma
    return Denoised(x, ran, implied)


class DiffusionPipeline:
    """A conditional diffusion model ready to sample. Build with `DiffusionPipeline.from_run(run)`
    (or `synthmed.models.load(run)`); the trainer builds one from its EMA weights for its grids."""

    def __init__(self, net: torch.nn.Module, config: TrainConfig, info: dict[str, Any],
                 autoencoder: torch.nn.Module | None = None, model_hash: str = "",
                 device: torch.device | None = None):
        self.device = device or torch.device("cpu")
        self.net = net.to(self.device).eval()
        self.autoencoder = autoencoder.to(self.device).eval() if autoencoder is not None else None
        self.config = config
        self.info = info
        self.model_hash = model_hash

    @classmethod
    def from_run(cls, run: str | Path, device: str = "auto") -> "DiffusionPipeline":
        """Load a trained run folder (or its model.safetensors) for sampling."""
        c = load_components(run)
        return cls(c.net, c.config, c.info, c.autoencoder, c.model_hash, pick_device(device))

    @property
    def spatial_dims(self) -> int:
        return int(self.info["spatial_dims"])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.info["shape"])

    @property
    def label_vocabulary(self) -> list[str]:
        return list(self.info["label_vocabulary"])

    @property
    def condition_priors(self) -> dict[str, Any]:
        return dict(self.info.get("condition_priors", {}))

    def __call__(self, *args: Any, **kwargs: Any) -> SampleOutput:
        return self.sample(*args, **kwargs)

    def sample(self, n: int, conditions: dict | list[dict] | None = None, steps: int | None = None,
               sampler: str | None = None, guidance_scale: float | None = None, seed: int = 0,
               batch_size: int = 64, on_batch: Callable[[int], None] | None = None, *,
               seeds: Sequence[int] | None = None, init_images: np.ndarray | None = None,
               strength: float | None = None, init_noise: np.ndarray | None = None,
               fresh_noise: float = 1.0, noise_at: float | None = None) -> SampleOutput:
        """`n` images, float32 (n, *shape) in [0, 1], and the settings that made them.

        sampler / steps / guidance_scale: None means the model's own (`resolve_sampling`).
        Sample i depends only on (seed, i, its condition), or on `seeds[i]` when given.
        `init_images` (n, *shape) in [0, 1] with `strength` in (0, 1]: each sample is that image
        re-noised part of the way and denoised with its conditions (SDEdit); the returned
        settings' `steps` are the steps that ran, `strength` is recorded on the output.
        `init_noise` (model space, as a `noise_at` output gives it) is the noise of that
        re-noising, blended with a fresh draw whose share of the variance is `fresh_noise`
        (1: all fresh, classic SDEdit). `noise_at` (a strength): the output's `noise` is each
        sample's own noise at that SDEdit start (see `denoise`), for follow-ups that keep it.
        `on_batch(k)` is called after each batch with the number of images it made (progress)."""
        settings = resolve_sampling(self.config, sampler, steps, guidance_scale)
        if n < 0 or batch_size < 1:
            raise InputError("n must be >= 0 and batch_size >= 1")
        if seeds is not None and len(seeds) != n:
            raise InputError(f"seeds: {len(seeds)} given for {n} samples")
        if init_images is not None:
            init_images = np.asarray(init_images, dtype=np.float32)
            if init_images.shape != (n, *self.shape):
                raise InputError(f"init_images: shape {init_images.shape}, expected {(n, *self.shape)}")
            if strength is None or not 0.0 < float(strength) <= 1.0:
                raise InputError(f"strength must be in (0, 1] (got {strength!r})")
        if not 0.0 <= float(fresh_noise) <= 1.0:
            raise InputError(f"fresh_noise must be in [0, 1] (got {fresh_noise!r})")
        if noise_at is not None and (init_images is not None or not 0.0 < float(noise_at) <= 1.0):
            raise InputError(f"noise_at must be in (0, 1], for samples drawn from noise (got "
                             f"{noise_at!r}{' with init_images' if init_images is not None else ''})")
        if init_noise is not None:
            init_noise = np.asarray(init_noise, dtype=np.float32)
            want = (n, int(self.info["in_channels"]), *self.info["model_shape"])
            if init_images is None or init_noise.shape != want:
                raise InputError(f"init_noise: shape {init_noise.shape} needs init_images and "
                                 f"shape {want}")
        cond = encode_conditions(conditions, n, self.label_vocabulary)
        latent = self.autoencoder is not None
        model_shape = tuple(self.info["model_shape"])
        out = np.empty((n, *self.shape), dtype=np.float32)
        noises = None
        ran_steps = settings.steps
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            gens = [torch.Generator().manual_seed(int(seeds[i]) if seeds is not None else sample_seed(seed, i))
                    for i in range(start, stop)]
            sched = sampling_scheduler(settings.sampler, self.config.scheduler, clip=settings.clip)
            init = None if init_images is None else self._to_model_space(init_images[start:stop])
            given = None if init_noise is None else torch.from_numpy(init_noise[start:stop])
            d = denoise(self.net, sched, cond.select(slice(start, stop)),
                        (stop - start, self.info["in_channels"], *model_shape), gens,
                        settings.steps, settings.guidance_scale, self.device, init=init,
                        strength=1.0 if strength is None else float(strength), init_noise=given,
                        fresh=float(fresh_noise), noise_at=noise_at)
            x, ran = d.x, d.steps
            if d.noise is not None:
                if noises is None:
                    noises = np.empty((n, *d.noise.shape[1:]), dtype=np.float32)
                noises[start:stop] = d.noise.float().cpu().numpy()
            if init is None and ran != settings.steps:  # the record must state what ran
                raise SynthmedError(f"the {settings.sampler} scheduler took {ran} steps where "
                                    f"{settings.steps} were resolved")
            ran_steps = ran
            if latent:
                with torch.no_grad():
                    x = self.autoencoder.decode(x / float(self.info["latent"]["scale_factor"]))
            x = crop_to(x[:, 0], self.shape)
            out[start:stop] = ((x.float().clamp(-1, 1) + 1) / 2).cpu().numpy()
            if on_batch is not None:
                on_batch(stop - start)
        if init_images is None:
            return SampleOutput(out, settings, noise=noises)
        return SampleOutput(out, replace(settings, steps=ran_steps), strength=float(strength),
                            noise=noises)

    @torch.no_grad()
    def _to_model_space(self, images: np.ndarray) -> torch.Tensor:
        """Images in [0, 1] -> what the denoiser works on: [-1, 1] pixels padded to the model's
        shape, or (latent runs) the autoencoder's latent mean times the scale factor."""
        x = torch.from_numpy(np.ascontiguousarray(images))[:, None] * 2 - 1
        if self.autoencoder is None:
            return pad_to(x, tuple(self.info["model_shape"]), -1.0).to(self.device)
        pixel_shape = tuple(self.info["latent"].get("pixel_shape") or self.shape)
        z = self.autoencoder.encode(pad_to(x, pixel_shape, -1.0).to(self.device))[0]
        return z * float(self.info["latent"]["scale_factor"])


# The name callers used before sampling moved here from models/diffusion.py.
DiffusionModel = DiffusionPipeline


def load(run: str | Path, device: str = "auto") -> DiffusionPipeline:
    """Load a trained run folder (or its model.safetensors) for sampling."""
    return DiffusionPipeline.from_run(run, device)


__all__ = ["DiffusionPipeline", "DiffusionModel", "Denoised", "load", "denoise", "sample_seed",
           "sdedit_steps"]
