"""Sampling settings, resolved once: (the model's defaults, the user's arguments) -> what runs.

Every record of a sampling run (cohort.json, evaluation.json, the model card, the training
grids) writes the `SamplingSettings` that `DiffusionModel.sample` returned, so a record can never
state a sampler or a step count that did not run. `steps` is the number of denoising steps the
scheduler really takes (its `timesteps` after `set_timesteps`), not the number asked for.

The ddpm sampler is the ancestral reference: by default it runs the whole training chain
(`scheduler.num_train_timesteps` steps), because `sampling.steps` is sized for the fast
samplers. An explicit `steps` is honoured (diffusers' DDPMScheduler can skip steps).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from synthmed.errors import InputError
from synthmed.models.config import TrainConfig
from synthmed.models.schedulers import SAMPLERS, TIMESTEP_SPACING, sampling_scheduler


@dataclass(frozen=True)
class SamplingSettings:
    """What a `sample` call ran with: everything here changes the images."""

    sampler: str
    steps: int                 # denoising steps actually taken (= denoiser calls per batch)
    guidance_scale: float      # classifier-free guidance; no effect on samples with no condition
    clip: bool                 # predicted x0 clipped / thresholded to [-1, 1] (pixel space only)
    eta: float | None          # DDIM's noise scale (0: deterministic); None for the other samplers
    timestep_spacing: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SampleOutput:
    """The result of `DiffusionModel.sample`: images in [0, 1], shape (n, *shape), and the
    settings that made them."""

    images: np.ndarray
    settings: SamplingSettings
    strength: float | None = None  # SDEdit strength when made from init images, else None
    # With `noise_at`: each sample's own noise at that SDEdit start, model space (n, C, ...).
    noise: np.ndarray | None = None


def resolve_sampling(config: TrainConfig, sampler: str | None = None, steps: int | None = None,
                     guidance_scale: float | None = None) -> SamplingSettings:
    """The settings a model trained with `config` samples with, given the user's arguments (None:
    the model's default). Bad arguments are refused here, before any sampling."""
    sampler = sampler or config.sampling.sampler
    if sampler not in SAMPLERS:
        raise InputError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    total = config.scheduler.num_train_timesteps
    if steps is None:
        steps = total if sampler == "ddpm" else config.sampling.steps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= total:
        raise InputError(f"steps must be a whole number between 1 and {total} (got {steps!r})")
    guidance = config.sampling.guidance_scale if guidance_scale is None else guidance_scale
    try:
        guidance = float(guidance)
    except (TypeError, ValueError):
        guidance = math.nan
    if not math.isfinite(guidance) or guidance < 0:
        raise InputError(f"guidance_scale must be a finite number >= 0 (got {guidance_scale!r})")
    # Clipping x0 to [-1, 1] only makes sense in pixel space; latents are unbounded.
    clip = bool(config.sampling.clip and not config.latent.enabled)
    sched = sampling_scheduler(sampler, config.scheduler, clip=clip)
    sched.set_timesteps(int(steps))
    return SamplingSettings(sampler=sampler, steps=len(sched.timesteps), guidance_scale=guidance,
                            clip=clip, eta=0.0 if sampler == "ddim" else None,
                            timestep_spacing=TIMESTEP_SPACING)
