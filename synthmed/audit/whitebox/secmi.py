"""SecMI-stat (Duan et al. 2023): the step-wise error of a deterministic DDIM round trip.

x0 is carried to x_t by deterministic DDIM inversion (steps of `secmi_interval`), one step
further to x_{t+k}, and denoised back one step to x~_t. The model fits the posterior of its
training images better, so x~_t lands closer to x_t for a member. Score = -mean (x~_t - x_t)^2.
Deterministic: no noise is drawn.
"""

from __future__ import annotations

import numpy as np
import torch

from synthmed.audit.whitebox.settings import WhiteboxSettings
from synthmed.audit.whitebox.target import ModelTarget, batched, per_image

NAME = "secmi"
DESCRIBE = ("running a real image a few steps into noise and one step back with the model: the "
            "round trip returns closer for training images")


def scores(target: ModelTarget, x0: torch.Tensor, cond, settings: WhiteboxSettings, seed: int = 0) -> np.ndarray:
    k = max(1, target.timestep(settings.secmi_interval))
    n_steps = max(1, settings.secmi_timestep // settings.secmi_interval)
    t_sec = min(n_steps * k, target.T - 1 - k)

    def fn(xb, cb, idx):
        x, s = xb.to(target.device), 0
        while s < t_sec:
            nxt = min(s + k, t_sec)
            x = target.ddim_step(x, s, nxt, cb)
            s = nxt
        x_next = target.ddim_step(x, t_sec, t_sec + k, cb)
        x_back = target.ddim_step(x_next, t_sec + k, t_sec, cb)
        return -per_image((x_back - x) ** 2).double()

    return batched(x0, cond, settings.batch_size, fn)
