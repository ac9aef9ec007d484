"""Loss attack (Matsumoto et al. 2023; Carlini et al. 2023): a training image is denoised better.

Score = -mean over timesteps of log(mean over noise draws of the eps-prediction error) at a few
fixed timesteps. The log makes the timesteps count alike (errors at large t are larger for
every image); a member's error is lower at each of them.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from synthmed.audit.whitebox.settings import WhiteboxSettings
from synthmed.audit.whitebox.target import ModelTarget, batched, per_image

NAME = "loss"


def scores(target: ModelTarget, x0: torch.Tensor, cond, settings: WhiteboxSettings, seed: int = 0) -> np.ndarray:
    ts = [target.timestep(t) for t in settings.loss_timesteps]

    def fn(xb, cb, idx):
        total = torch.zeros(xb.shape[0], dtype=torch.float64)
        for j, t in enumerate(ts):
            a = target.alpha(t)
            err = torch.zeros(xb.shape[0], dtype=torch.float64)
            for d in range(settings.loss_draws):
                noise = target.noise(xb, idx, seed, (1, j, d))
                x_t = math.sqrt(a) * xb + math.sqrt(1 - a) * noise
                err += per_image((target.eps(x_t, t, cb).cpu() - noise) ** 2).double()
            total += torch.log(err / settings.loss_draws + 1e-12)
        return -total / len(ts)

    return batched(x0, cond, settings.batch_size, fn)
