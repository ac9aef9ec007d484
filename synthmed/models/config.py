"""`TrainConfig`: everything `synthmed train` needs, validated when the YAML is read.

Defaults are the set-up that lets the fast sampler (DPM-Solver++, ~25 steps) agree with the
1000-step DDPM reference on small CPU-trained models: v-prediction on a cosine noise schedule,
EMA weights and x0 clipping. (An epsilon model on the linear schedule diverged under DPM-Solver++.)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from synthmed.config import StrictConfig


class NetworkConfig(StrictConfig):
    """MONAI DiffusionModelUNet size. Attention only at the coarsest level keeps CPU cost low."""

    channels: tuple[int, ...] = (32, 64, 64)
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = Field(1, ge=1)
    num_head_channels: int = Field(16, ge=1)
    norm_num_groups: int = Field(16, ge=1)
    context_dim: int = Field(32, ge=4, description="width of the condition tokens (cross-attention)")
    embed_conditions: bool = Field(True, description="also add the condition tokens (flattened, "
                                   "projected) to the timestep embedding of every block, the "
                                   "strong path of class-conditional DDPMs; cross-attention alone "
                                   "learnt labels slowly")

    @model_validator(mode="after")
    def _check(self) -> "NetworkConfig":
        if len(self.attention_levels) != len(self.channels):
            raise ValueError("attention_levels needs one entry per entry of channels")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ValueError("every channels entry must be a multiple of norm_num_groups")
        return self


class ConditioningConfig(StrictConfig):
    """Which attributes condition the model, and how often each is dropped (classifier-free guidance).

    Each attribute (the label set, age, sex) is replaced by its learned "null" token independently
    with its drop probability, and all of them together with `drop_all`, so one model learns every
    partial condition and the unconditional distribution.
    """

    labels: bool = True
    age: bool = True
    sex: bool = True
    drop_labels: float = Field(0.15, ge=0.0, le=1.0)
    drop_age: float = Field(0.15, ge=0.0, le=1.0)
    drop_sex: float = Field(0.15, ge=0.0, le=1.0)
    drop_all: float = Field(0.1, ge=0.0, le=1.0)


class SchedulerConfig(StrictConfig):
    """The DDPM noise schedule used for training (diffusers DDPMScheduler)."""

    num_train_timesteps: int = Field(1000, ge=10)
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"
    prediction_type: Literal["v_prediction", "epsilon"] = "v_prediction"
    zero_terminal_snr: bool = Field(False, description="rescale betas to zero terminal SNR "
                                    "(then samplers use trailing timestep spacing)")


class SamplingConfig(StrictConfig):
    """Defaults for `DiffusionModel.sample` and for the sample grids written during training."""

    sampler: Literal["dpm++", "ddim", "ddpm"] = "dpm++"
    steps: int = Field(25, ge=1)
    guidance_scale: float = Field(2.0, ge=0.0)
    clip: bool = Field(True, description="clip predicted x0 to the data range (pixel space only)")


class LatentConfig(StrictConfig):
    """Stage 1 of latent diffusion: a MONAI AutoencoderKL trained before the diffusion model."""

    enabled: bool = False
    latent_channels: int = Field(3, ge=1)
    channels: tuple[int, ...] = (32, 64)
    num_res_blocks: int = Field(1, ge=1)
    norm_num_groups: int = Field(16, ge=1)
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    kl_weight: float = Field(1e-6, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "LatentConfig":
        if any(c % self.norm_num_groups for c in self.channels):
            raise ValueError("every latent.channels entry must be a multiple of latent.norm_num_groups")
        return self


class DPConfig(StrictConfig):
    """Differentially private training (Opacus DP-SGD) with the PATIENT as the privacy unit.

    Each step samples patients independently with probability batch_size / (train patients)
    (Poisson sampling), so `batch_size` is the expected number of patients per step; a sampled
    patient's images (up to `images_per_patient`) make ONE gradient, clipped to `max_grad_norm`
    as one record (synthmed.models.dp says why). The noise is chosen by Opacus's accountant so
    that `steps` such steps spend `target_epsilon` at `delta`.
    """

    target_epsilon: float = Field(..., gt=0, description="privacy budget of the whole training run")
    delta: float = Field(1e-5, gt=0, lt=1, description="must be below 1 / (train patients)")
    max_grad_norm: float = Field(1.0, gt=0, description="per-patient gradient clipping norm")
    images_per_patient: int = Field(1, ge=1, description="at most this many of a sampled patient's "
                                    "images go into its one gradient")
    accountant: Literal["rdp", "prv"] = "rdp"


class TrainConfig(StrictConfig):
    seed: int = 0
    steps: int = Field(2000, ge=1, description="optimiser steps of the diffusion model")
    batch_size: int = Field(16, ge=1, description="global batch (split across DDP ranks)")
    lr: float = Field(2e-4, gt=0)
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0.0, le=1.0, description="upper bound of the EMA decay "
                             "(it warms up as 1 - (1 + step)^-2/3)")
    checkpoint_every: int = Field(500, ge=1, description="checkpoint every K steps, in both "
                                  "stages of latent training (autoencoder, then diffusion)")
    sample_every: int = Field(500, ge=0, description="sample grid PNG every K steps (0: only at the end)")
    sample_grid: int = Field(16, ge=1, description="images in each sample grid")
    log_every: int = Field(10, ge=1)
    bf16: bool = Field(True, description="bf16 autocast on GPU (ignored on CPU)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="CPU threads per process (default: torch's)")
    network: NetworkConfig = NetworkConfig()
    conditioning: ConditioningConfig = ConditioningConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    sampling: SamplingConfig = SamplingConfig()
    latent: LatentConfig = LatentConfig()
    dp: DPConfig | None = Field(None, description="train with differential privacy (patient-level "
                                "DP-SGD); None trains without")

    @model_validator(mode="after")
    def _check_dp(self) -> "TrainConfig":
        if self.dp is not None and self.latent.enabled:
            # Fail closed: the autoencoder is trained on the same patients without DP and ships
            # inside the model, so an epsilon for the denoiser alone would not describe the model.
            raise ValueError("dp cannot be combined with latent.enabled: the autoencoder would be "
                             "trained on the patients without differential privacy; train a pixel "
                             "model for a DP release")
        return self
