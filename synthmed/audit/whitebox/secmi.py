"""SecMI-stat (Duan et al. 2023): the step-wise error of a deterministic DDIM round trip.

x0 is carried to x_t by deterministic DDIM inversion (steps of `secmi_interval`), one step
further to x_{t+k}, and denoised back one step to x~_t. The model fits the posterior of its
training images better, so x~_t lands closer to x_t for a member: the published score is
-mean (x~_t - x_t)^2 (`secmi_direction: "published"`).

The implementation follows the paper (deterministic DDIM inversion phi from x0, then phi one
step and psi one step back, squared error). On small, heavily memorised models the error moves
the OTHER way. Measured on the tiny over-trained model of tests/test_audit_whitebox.py (seed 2,
t = 100 in DDIM steps of 50): the published score has AUC 0.010, members' log t-error median
-9.22 against -10.03 for holdout and -10.19 for reference images. The reason: such a model sees
almost no noise in its own training images (eps(x0, 0) is small for a member, large and
noise-like for a non-member), so a member's inverted x_t is far cleaner than the noise level t
the model expects, and the one step on and back from there is the least consistent; a
non-member's inversion looks like an ordinary noisy image. A fixed one-sided score would pass
such a model. So by
default (`secmi_direction: "two-sided"`) the score is the distance of log(error) from its median
over the REFERENCE images (real non-members, never evaluated): |log e(x) - median_ref log e|.
For a model that never saw the candidates, members and non-members share the reference's error
distribution, so the score stays calibrated (AUC 0.5); a member is found whichever way the model
bends its error. Deterministic: no noise is drawn.
"""

from __future__ import annotations

import numpy as np
import torch

from synthmed.audit.whitebox.settings import WhiteboxSettings
from synthmed.audit.whitebox.target import ModelTarget, batched, per_image

NAME = "secmi"


def errors(target: ModelTarget, x0: torch.Tensor, cond, settings: WhiteboxSettings) -> np.ndarray:
    """The step-wise (t-) error of each image: mean (x~_t - x_t)^2."""
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
        return per_image((x_back - x) ** 2).double()

    return batched(x0, cond, settings.batch_size, fn)


def scores(target: ModelTarget, x0: torch.Tensor, cond, settings: WhiteboxSettings, seed: int = 0,
           reference: tuple[torch.Tensor, object] | None = None) -> np.ndarray:
    """Per-image member scores; `reference` = (x0, conditions) of real non-members that are not
    among the candidates (needed by the two-sided score)."""
    err = errors(target, x0, cond, settings)
    if settings.secmi_direction == "published":
        return -err
    if reference is None or reference[0].shape[0] == 0:
        raise ValueError("SecMI's two-sided score needs reference images (real non-members) to "
                         "centre on; set whitebox.secmi_direction: published to run without")
    ref = np.log(errors(target, reference[0], reference[1], settings) + 1e-20)
    return np.abs(np.log(err + 1e-20) - float(np.median(ref)))
