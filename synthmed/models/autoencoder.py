"""Stage 1 of latent diffusion: a MONAI AutoencoderKL, trained on the train split before the
diffusion model, then used to encode the training images once and to decode samples.

Loss: L1 reconstruction + a small KL term. No perceptual or adversarial loss: both need pretrained
networks, and synthmed never downloads weights.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from monai.networks.nets import AutoencoderKL

from synthmed.models.config import LatentConfig


def build_autoencoder(spatial_dims: int, cfg: LatentConfig) -> AutoencoderKL:
    n = len(cfg.channels)
    return AutoencoderKL(
        spatial_dims=spatial_dims, in_channels=1, out_channels=1, channels=tuple(cfg.channels),
        num_res_blocks=(cfg.num_res_blocks,) * n, attention_levels=(False,) * n,
        latent_channels=cfg.latent_channels, norm_num_groups=cfg.norm_num_groups,
        # Non-local attention at full latent resolution is the costliest part on CPU and not
        # needed at the small sizes synthmed works with.
        with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False,
    )


def downsampling(cfg: LatentConfig) -> int:
    return 2 ** (len(cfg.channels) - 1)


def train_autoencoder(ae: AutoencoderKL, images: torch.Tensor, cfg: LatentConfig, seed: int,
                      device: torch.device, on_step: Callable[[int, float], None] | None = None, *,
                      start_step: int = 0, optimizer_state: dict[str, Any] | None = None,
                      checkpoint_every: int = 0,
                      on_checkpoint: Callable[[int, torch.optim.Optimizer, float], None] | None = None,
                      ) -> float:
    """Train `ae` on `images` ((N, 1, *spatial) in [-1, 1], padded). Returns the final L1 loss.

    Data order and noise are functions of (seed, step), like the diffusion stage, so a run resumed
    at `start_step` with the weights and `optimizer_state` of a checkpoint computes exactly what
    an uninterrupted one does. `on_checkpoint(step, optimizer, l1)` is called every
    `checkpoint_every` steps before the last.
    """
    ae.to(device).train()
    opt = torch.optim.AdamW(ae.parameters(), lr=cfg.lr)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    n = images.shape[0]
    last = float("nan")
    for step in range(start_step, cfg.steps):
        rng = np.random.default_rng([seed, 7, step])
        idx = torch.from_numpy(rng.integers(0, n, size=min(cfg.batch_size, n)))
        x = images[idx].to(device)
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        z_mu, z_sigma = ae.encode(x)
        z = z_mu + z_sigma * torch.randn(z_mu.shape, generator=g).to(device)
        recon = ae.decode(z)
        l1 = (recon - x).abs().mean()
        kl = 0.5 * (z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2) + 1e-8) - 1)
        kl = kl.sum(dim=tuple(range(1, kl.ndim))).mean()
        loss = l1 + cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        opt.step()
        last = float(l1.detach())
        if on_step is not None:
            on_step(step, last)
        done = step + 1
        if on_checkpoint is not None and checkpoint_every and done % checkpoint_every == 0 \
                and done < cfg.steps:
            on_checkpoint(done, opt, last)
    ae.eval()
    return last


@torch.no_grad()
def encode_all(ae: AutoencoderKL, images: torch.Tensor, device: torch.device,
               batch: int = 32) -> torch.Tensor:
    """Latent means of all images (the mean, not a draw, so the latents are deterministic)."""
    ae.eval()
    out = [ae.encode(images[i:i + batch].to(device))[0].cpu() for i in range(0, images.shape[0], batch)]
    return torch.cat(out)
