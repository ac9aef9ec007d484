"""Noise schedulers from diffusers, built from the config. They know nothing about the network.

Training uses DDPMScheduler for `add_noise` / `get_velocity`; sampling uses one of
"dpm++" (DPMSolverMultistepScheduler, DPM-Solver++ 2M, the config default), "ddim" or "ddpm"
(the ancestral reference, by default over every training timestep). All share the training betas.
Which one runs, and for how many steps, is decided by `synthmed.models.sampling.resolve_sampling`.
"""

from __future__ import annotations

from typing import Any

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from synthmed.errors import InputError
from synthmed.models.config import SchedulerConfig

SAMPLERS = ("dpm++", "ddim", "ddpm")
# "trailing" puts the first sampling step at t = T, where a zero-terminal-SNR or cosine schedule
# is pure noise, so sampling starts from what training saw.
TIMESTEP_SPACING = "trailing"


def _common(cfg: SchedulerConfig) -> dict[str, Any]:
    return dict(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                prediction_type=cfg.prediction_type, rescale_betas_zero_snr=cfg.zero_terminal_snr,
                timestep_spacing=TIMESTEP_SPACING)


def training_scheduler(cfg: SchedulerConfig) -> DDPMScheduler:
    return DDPMScheduler(**_common(cfg), clip_sample=False)


def sampling_scheduler(name: str, cfg: SchedulerConfig, *, clip: bool = True):
    """A fresh sampler (they keep per-run state, so one per `sample` call)."""
    common = _common(cfg)
    if name == "dpm++":
        # Dynamic thresholding (Imagen) clips the predicted x0 to the data range at each step;
        # with x0 kept in [-1, 1] the multistep extrapolation cannot run away.
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                           thresholding=clip, sample_max_value=1.0,
                                           dynamic_thresholding_ratio=0.995,
                                           lower_order_final=True, final_sigmas_type="zero")
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=clip, clip_sample_range=1.0, set_alpha_to_one=True)
    if name == "ddpm":
        return DDPMScheduler(**common, clip_sample=clip, clip_sample_range=1.0)
    raise InputError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
