"""PIA, the proximal initialisation attack (Kong et al. 2024): two queries per image.

The model's own noise prediction at t = 0, eps0 = eps(x0, 0), replaces random noise: x_t =
sqrt(a_t) x0 + sqrt(1 - a_t) eps0. For a training image the model's prediction at (x_t, t) stays
consistent with eps0. Score = -||eps(x_t, t) - eps0||_p (per element mean, so image size does not
matter). Deterministic: no noise is drawn.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from synthmed.audit.whitebox.settings import WhiteboxSettings
from synthmed.audit.whitebox.target import ModelTarget, batched, per_image

NAME = "pia"


def scores(target: ModelTarget, x0: torch.Tensor, cond, settings: WhiteboxSettings, seed: int = 0) -> np.ndarray:
    t = target.timestep(settings.pia_timestep)
    a = target.alpha(t)
    p = float(settings.pia_p)

    def fn(xb, cb, idx):
        e0 = target.eps(xb, 0, cb)
        x_t = math.sqrt(a) * xb.to(e0.device) + math.sqrt(1 - a) * e0
        diff = (target.eps(x_t, t, cb) - e0).abs().double()
        return -per_image(diff ** p) ** (1.0 / p)

    return batched(x0, cond, settings.batch_size, fn)
