"""Issue 13, build item 5: the sampler sweep on a model whose answer is known.

The linear-Gaussian model of tests/helpers_generate.py has an exact denoiser, so its samples are
right once the sampler takes enough steps; one DPM-Solver++ step returns (close to) the mean
image, far from the data. The sweep must record every step count, time each, find that one step
costs, and draw the plot.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers_dataset import make_toy_dataset
from helpers_generate import fit_gaussian_model
from synthmed.data.dataset import Dataset
from synthmed.errors import InputError
from synthmed.evaluate.sweep import sweep_steps


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _embed(images: np.ndarray) -> np.ndarray:
    """4x4 block means: a fixed feature map (the product trains the audit's encoder)."""
    x = np.asarray(images, np.float64)
    n, h, w = x.shape
    return x.reshape(n, 4, h // 4, 4, w // 4).mean((2, 4)).reshape(n, -1)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = make_toy_dataset(tmp_path_factory.mktemp("sweep") / "ds", n_patients=60,
                            images_per_patient=2, shape=(16, 16), seed=3)
    ds = Dataset.open(root)
    tr = ds.require_split("train")
    model = fit_gaussian_model(np.asarray(ds.images[tr]), ds.label_matrix()[tr], k=12)
    return ds, model


@pytest.fixture(scope="module")
def swept(toy):
    ds, model = toy
    return sweep_steps(model, ds, [1, 4, 40], n=48, seed=0, embedder=_embed, batch_size=48,
                       n_at={40: 16}, n_boot=12)


def test_sweep_records_every_step_count_and_finds_where_fewer_steps_cost(swept, tmp_path):
    assert [p.steps for p in swept.points] == [1, 4, 40]
    assert [p.n for p in swept.points] == [48, 48, 16] and swept.size == 16
    assert swept.reference_steps == 40
    walls = {p.steps: p.wall_seconds for p in swept.points}
    assert all(w > 0 for w in walls.values())
    assert walls[40] > walls[1]  # 40 denoiser calls per batch cost more than one
    one, _, ref = swept.points
    assert one.costs is True and ref.costs is None
    assert one.metrics["frechet"] > ref.metrics["frechet"] + 2 * max(one.spread["frechet"], ref.spread["frechet"])
    assert swept.costs_from in (1, 4)
    assert one.metrics["recall"] < ref.metrics["recall"]  # the mean image covers nothing
    assert all(p.sampling["steps"] == p.steps for p in swept.points)
    fl = swept.floor["frechet"]
    assert fl.low < fl.mean < fl.high and swept.floor.size == 16
    j = json.loads(json.dumps(swept.to_json(), allow_nan=False))
    assert [p["steps"] for p in j["points"]] == [1, 4, 40] and j["costs_from"] == swept.costs_from
    png = swept.plot(tmp_path / "sweep.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert "steps" in swept.summary()


def test_sweep_default_encoder_and_bad_input(toy):
    ds, model = toy
    res = sweep_steps(model, ds.root, [2, 6], n=10, seed=1, batch_size=10, n_boot=4, encoder_steps=3)
    assert res.settings["encoder"]["source"].startswith("trained") and res.settings["encoder"]["steps"] == 3
    assert [p.steps for p in res.points] == [2, 6]
    with pytest.raises(InputError, match="repeat"):
        sweep_steps(model, ds, [4, 4], n=10, embedder=_embed)
    with pytest.raises(InputError, match="at least"):
        sweep_steps(model, ds, [4], n=3, embedder=_embed)
