"""Sampling settings are resolved once, and every record states what actually ran.

A model configured with `sampling.sampler: ddim` must be sampled with ddim when nobody asks for
another sampler (observed: its images equal an explicit ddim run and differ from dpm++), and a
ddpm cohort must record the denoising steps the scheduler really took (counted here as denoiser
calls), not `sampling.steps`.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from helpers_dataset import make_toy_dataset
from synthmed.data.cohort import Cohort
from synthmed.errors import InputError
from synthmed.generate import generate_cohort
from synthmed.models import load, train
from test_models import one_thread, tiny_config  # noqa: F401 (one_thread: autouse fixture)


class CountingNet(torch.nn.Module):
    """Wraps a denoiser and counts its calls: one call per denoising step and batch."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x, t, cond):
        self.calls += 1
        return self.inner(x, t, cond)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("prov"), n_patients=6, images_per_patient=2,
                            shape=(8, 8), seed=4)


@pytest.fixture(scope="module")
def ddim_run(toy, tmp_path_factory):
    cfg = tiny_config(steps=2, batch_size=4, sample_every=2,
                      sampling={"sampler": "ddim", "steps": 5, "guidance_scale": 1.5})
    return train(toy, cfg, tmp_path_factory.mktemp("ddim") / "run")


def _images(path) -> np.ndarray:
    return np.asarray(Cohort.open(path).images)


def test_a_ddim_configured_model_samples_with_ddim(ddim_run, tmp_path):
    m = load(ddim_run)
    kw = dict(label_rates={"Mass": 0.5}, seed=3)
    default = generate_cohort(m, 4, tmp_path / "default", **kw)
    ddim = generate_cohort(m, 4, tmp_path / "ddim", sampler="ddim", steps=5, guidance_scale=1.5, **kw)
    dpm = generate_cohort(m, 4, tmp_path / "dpm", sampler="dpm++", steps=5, guidance_scale=1.5, **kw)
    np.testing.assert_array_equal(_images(default), _images(ddim))
    assert not np.allclose(_images(default), _images(dpm))
    info = json.loads((default / "cohort.json").read_text())
    assert info["sampling"]["sampler"] == "ddim" and info["sampling"]["steps"] == 5
    assert info["sampling"]["guidance_scale"] == 1.5
    assert info["sampling"] == json.loads((ddim / "cohort.json").read_text())["sampling"]
    # The model card and the training grid state the same resolved defaults.
    card = json.loads((ddim_run / "model_card.json").read_text())
    assert card["sampler_defaults"] == info["sampling"]
    assert "ddim, 5 steps" in (ddim_run / "model_card.md").read_text()
    grid = json.loads((ddim_run / "samples" / "step_000002.json").read_text())
    assert grid["sampling"]["sampler"] == "ddim" and grid["sampling"]["steps"] == 5


def test_sample_returns_the_settings_it_used(ddim_run):
    m = load(ddim_run)
    out = m.sample(3, seed=1)
    assert out.settings.sampler == "ddim" and out.settings.steps == 5
    assert out.settings.guidance_scale == 1.5 and out.images.shape == (3, 8, 8)
    explicit = m.sample(3, sampler="ddim", steps=5, guidance_scale=1.5, seed=1)
    np.testing.assert_array_equal(out.images, explicit.images)
    assert out.settings == explicit.settings
    other = m.sample(3, sampler="dpm++", seed=1)
    assert other.settings.sampler == "dpm++" and other.settings.steps == 5
    assert not np.allclose(out.images, other.images)


@pytest.mark.parametrize("asked, ran", [(None, 1000), (50, 50)])
def test_a_ddpm_cohort_records_the_steps_that_ran(ddim_run, tmp_path, asked, ran):
    m = load(ddim_run)
    counter = CountingNet(m.net)
    m.net = counter
    path = generate_cohort(m, 2, tmp_path / "c", sampler="ddpm", steps=asked, batch_size=2, seed=0)
    assert counter.calls == ran  # one batch: one denoiser call per step
    info = json.loads((path / "cohort.json").read_text())
    assert m.config.scheduler.num_train_timesteps == 1000
    assert info["sampling"]["sampler"] == "ddpm" and info["sampling"]["steps"] == ran


def test_a_ddpm_configured_model_card_states_the_full_chain(toy, tmp_path):
    cfg = tiny_config(steps=1, batch_size=4, sampling={"sampler": "ddpm", "steps": 5})
    run = train(toy, cfg, tmp_path / "run")
    card = json.loads((run / "model_card.json").read_text())
    assert card["sampler_defaults"]["sampler"] == "ddpm"
    assert card["sampler_defaults"]["steps"] == cfg.scheduler.num_train_timesteps


def test_bad_sampling_arguments_are_refused_before_sampling(ddim_run):
    m = load(ddim_run)
    for kw, match in (({"sampler": "euler"}, "unknown sampler"), ({"steps": 0}, "steps"),
                      ({"steps": 1001}, "steps"), ({"guidance_scale": -1.0}, "guidance"),
                      ({"guidance_scale": math.nan}, "guidance"),
                      ({"guidance_scale": math.inf}, "guidance")):
        with pytest.raises(InputError, match=match):
            m.sample(1, **kw)


def test_evaluation_records_what_ran(ddim_run, tmp_path):
    from synthmed.data.dataset import Dataset
    from synthmed.evaluate import evaluate_generator

    # No finding labels: nothing but the unconditional draw and its fidelity (no classifier).
    # Another dataset than the model's, on purpose, so it has to be allowed.
    plain = Dataset.open(make_toy_dataset(tmp_path / "plain", n_patients=6, shape=(8, 8), labels=(),
                                          seed=5))
    m = load(ddim_run)
    record = evaluate_generator(m, plain, tmp_path / "eval", n=2, sampler="ddpm",
                                allow_other_dataset=True)
    assert record["sampler"] == "ddpm" and record["steps"] == 1000
    assert record["sampling"]["unconditional"]["steps"] == 1000
    assert json.loads((tmp_path / "eval" / "evaluation.json").read_text())["steps"] == 1000
    record = evaluate_generator(m, plain, None, n=2, allow_other_dataset=True)
    assert record["sampler"] == "ddim" and record["steps"] == 5
