"""Every sampler returns in-range images that agree with the full 1000-step DDPM reference.

The denoiser here is the exact one for a small finite data set (the posterior mean of x0 given x_t,
a softmax over the data points), returned in the model's v-prediction parametrisation. With a
perfect model, any correct sampler must land on the data distribution, so this checks the
schedulers, the v-prediction / clipping set-up, timestep spacing and the pipeline loop without
waiting for a network to train. (Trained-model agreement, and the epsilon / linear-schedule
defect it replaces, are measured in benchmarks/bench_models.py: results_models.md.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers_dataset import toy_image
from synthmed.generate.pipeline import DiffusionModel
from synthmed.models.schedulers import training_scheduler
from test_models import tiny_config

SHAPE = (8, 8)


class ExactDenoiser(torch.nn.Module):
    """v-prediction of the Bayes-optimal denoiser for data = a fixed set of images."""

    def __init__(self, data: torch.Tensor, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.register_buffer("data", data)  # (K, 1, *shape) in [-1, 1]
        self.register_buffer("acp", alphas_cumprod.double())

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        a = self.acp[t].view(-1, 1)
        xf, d = x.flatten(1).double(), self.data.flatten(1).double()
        logits = -((xf[:, None, :] - a.sqrt()[:, None] * d[None]) ** 2).sum(-1) / (2 * (1 - a))
        x0 = torch.softmax(logits, dim=1) @ d
        eps = (xf - a.sqrt() * x0) / (1 - a).sqrt()
        v = a.sqrt() * eps - (1 - a).sqrt() * x0
        return v.view_as(x).float()


@pytest.fixture(scope="module")
def exact_model():
    rng = np.random.default_rng(0)
    imgs = np.stack([toy_image(SHAPE, [j] if k % 2 else [], 30 + 5 * k, "FM"[k % 2], rng, 2)
                     for k, j in zip(range(12), [0, 1] * 6)])
    cfg = tiny_config()
    data = torch.from_numpy(imgs)[:, None] * 2 - 1
    net = ExactDenoiser(data, training_scheduler(cfg.scheduler).alphas_cumprod)
    info = {"spatial_dims": 2, "shape": list(SHAPE), "model_shape": list(SHAPE), "in_channels": 1,
            "label_vocabulary": ["Effusion", "Mass"], "latent": {"enabled": False}}
    return DiffusionModel(net, cfg, info), imgs


def _hist(x: np.ndarray) -> np.ndarray:
    return np.histogram(x, bins=10, range=(0, 1))[0] / x.size


@pytest.mark.slow
def test_every_sampler_agrees_with_the_ddpm_reference(exact_model):
    model, data = exact_model
    n = 24
    out = {}
    for name, steps in (("ddpm", 1000), ("dpm++", 20), ("dpm++", 10), ("ddim", 25)):
        out[f"{name}-{steps}"] = model.sample(n, sampler=name, steps=steps, seed=4, batch_size=n).images
    ref = out["ddpm-1000"]
    for name, x in out.items():
        assert x.shape == (n, *SHAPE) and np.isfinite(x).all(), name
        assert x.min() >= 0.0 and x.max() <= 1.0, name
        # A perfect denoiser puts every sample on a data point.
        nn_rmse = np.sqrt(((x[:, None] - data[None]) ** 2).mean(axis=(2, 3))).min(axis=1)
        assert np.median(nn_rmse) < 0.03, (name, np.median(nn_rmse))
        assert abs(x.mean() - ref.mean()) < 0.03 and abs(x.std() - ref.std()) < 0.03, name
        assert abs(x.mean() - data.mean()) < 0.04 and abs(x.std() - data.std()) < 0.04, name
        assert np.abs(_hist(x) - _hist(ref)).sum() < 0.25, name


def test_fast_samplers_are_not_fooled_by_a_diverging_model(exact_model):
    """A model whose x0 estimate runs away (like the defect's +-20 values) must still give images
    in [0, 1]: x0 clipping / thresholding keeps every sampler in range."""
    model, _ = exact_model
    inner = model.net

    class Diverging(torch.nn.Module):
        def forward(self, x, t, cond):
            return inner(x, t, cond) * 20.0

    bad = DiffusionModel(Diverging(), model.config, model.info)
    for name, steps in (("dpm++", 10), ("ddim", 10)):
        x = bad.sample(4, sampler=name, steps=steps, seed=0).images
        assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
