"""A single-query score-norm attack in the manner of SimA (Rao et al. 2025).

At a training image the learned score (the predicted noise of the clean image, queried at a
small timestep) nearly vanishes: the model has a mode there. Score = -RMS of eps(x0, t). One
query, no noise drawn.
"""

from __future__ import annotations

import numpy as np
import torch

from synthmed.audit.whitebox.settings import WhiteboxSettings
from synthmed.audit.whitebox.target import ModelTarget, batched, per_image

NAME = "sima"


def scores(target: ModelTarget, x0: torch.Tensor, cond, settings: WhiteboxSettings, seed: int = 0) -> np.ndarray:
    t = target.timestep(settings.sima_timestep)

    def fn(xb, cb, idx):
        return -per_image(target.eps(xb, t, cb) ** 2).double().sqrt()

    return batched(x0, cond, settings.batch_size, fn)
