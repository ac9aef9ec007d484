"""The sampling loop: noise -> (guided) denoising steps -> sample. Short on purpose, like a
diffusers pipeline; the network, the scheduler and the conditions come in from outside."""

from __future__ import annotations

from typing import Sequence

import torch
from diffusers.utils.torch_utils import randn_tensor

from synthmed.models.conditioning import Conditions


@torch.no_grad()
def denoise(net: torch.nn.Module, scheduler, cond: Conditions, shape: Sequence[int],
            generators: list[torch.Generator], steps: int, guidance_scale: float,
            device: torch.device) -> tuple[torch.Tensor, int]:
    """Run the reverse process for a batch; return the sample and the number of denoising steps
    taken. One generator per sample, so sample i depends only on its own seed and condition, not
    on what else is in the batch."""
    x = randn_tensor(tuple(shape), generator=generators, device=torch.device("cpu")).to(device)
    x = x * scheduler.init_noise_sigma
    scheduler.set_timesteps(steps)
    cond = cond.to(device)
    any_known = bool((cond.labels_known | cond.age_known | cond.sex_known).any())
    guided = any_known and guidance_scale != 1.0
    if guided:
        both = Conditions.cat([cond, cond.null()])
    ran = 0
    for t in scheduler.timesteps:
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
    return x, ran
