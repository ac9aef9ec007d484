"""Cohort generation: targets -> conditions -> Cohort folder, deterministic from the seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers_dataset import make_toy_dataset
from synthmed.data.cohort import Cohort
from synthmed.errors import InputError
from synthmed.generate import draw_conditions, generate_cohort
from synthmed.models import load, train
from synthmed.provenance import sha256_file
from test_models import tiny_config

VOCAB = ["Effusion", "Mass"]
PRIORS = {"label_rates": {"Effusion": 0.5, "Mass": 0.0},
          "age": {"mean": 60.0, "std": 10.0, "q05": 45.0, "q95": 75.0}, "female_share": 0.25}


def test_draw_conditions_follows_targets_and_seed():
    c = draw_conditions(4000, VOCAB, PRIORS, label_rates={"Mass": 0.3}, age_range=(40, 80),
                        sex_ratio=0.7, seed=1)
    assert c == draw_conditions(4000, VOCAB, PRIORS, label_rates={"Mass": 0.3}, age_range=(40, 80),
                                sex_ratio=0.7, seed=1)
    assert c != draw_conditions(4000, VOCAB, PRIORS, label_rates={"Mass": 0.3}, seed=2)
    mass = np.mean(["Mass" in x["labels"] for x in c])
    assert abs(mass - 0.3) < 0.03
    assert not any("Effusion" in x["labels"] for x in c)  # unnamed labels get rate 0
    ages = np.array([x["age"] for x in c])
    assert ages.min() >= 40 and ages.max() <= 80 and abs(ages.mean() - 60) < 2
    assert abs(np.mean([x["sex"] == "F" for x in c]) - 0.7) < 0.03
    # Without targets: the training population's summaries.
    p = draw_conditions(4000, VOCAB, PRIORS, seed=0)
    assert abs(np.mean(["Effusion" in x["labels"] for x in p]) - 0.5) < 0.03
    assert not any("Mass" in x["labels"] for x in p)
    ages = np.array([x["age"] for x in p])
    assert ages.min() >= 45 and ages.max() <= 75
    assert abs(np.mean([x["sex"] == "F" for x in p]) - 0.25) < 0.03


def test_draw_conditions_rejects_bad_targets():
    with pytest.raises(InputError, match="unknown label"):
        draw_conditions(3, VOCAB, PRIORS, label_rates={"Pneumonia": 0.2})
    with pytest.raises(InputError, match="between 0 and 1"):
        draw_conditions(3, VOCAB, PRIORS, label_rates={"Mass": 1.5})
    with pytest.raises(InputError, match="age_range"):
        draw_conditions(3, VOCAB, PRIORS, age_range=(80, 40))
    with pytest.raises(InputError, match="sex_ratio"):
        draw_conditions(3, VOCAB, PRIORS, sex_ratio=2)


def test_cli_option_parsing():
    from synthmed.cli.sample import parse_age_range, parse_label_rates

    assert parse_label_rates("Effusion=0.3, Mass=0.1") == {"Effusion": 0.3, "Mass": 0.1}
    assert parse_age_range("40-80") == (40.0, 80.0)
    with pytest.raises(InputError, match="NAME=RATE"):
        parse_label_rates("Effusion")
    with pytest.raises(InputError, match="40-80"):
        parse_age_range("forty")


def test_same_model_and_seed_give_the_same_cohort(tmp_path):
    before = torch.get_num_threads()
    ds = make_toy_dataset(tmp_path / "ds", n_patients=6, images_per_patient=2, shape=(8, 8), seed=4)
    run = train(ds, tiny_config(steps=2, batch_size=4), tmp_path / "run")
    torch.set_num_threads(1)
    try:
        m = load(run)
        kw = dict(label_rates={"Mass": 0.5}, age_range=(30, 70), sex_ratio=0.5, steps=3)
        a = generate_cohort(m, 5, tmp_path / "a", seed=7, **kw)
        b = generate_cohort(load(run), 5, tmp_path / "b", seed=7, **kw)
        c = generate_cohort(m, 5, tmp_path / "c", seed=8, **kw)
    finally:
        torch.set_num_threads(before)
    assert sha256_file(a / "images.npy") == sha256_file(b / "images.npy")
    assert (a / "manifest.csv").read_text() == (b / "manifest.csv").read_text()
    assert sha256_file(a / "images.npy") != sha256_file(c / "images.npy")
    cohort = Cohort.open(a)
    assert cohort.images.shape == (5, 8, 8) and 0 <= cohort.images.min() and cohort.images.max() <= 1
    ages = [r.age for r in cohort.records]
    assert all(30 <= x <= 70 for x in ages) and all(r.sex in ("F", "M") for r in cohort.records)
    info = json.loads((a / "cohort.json").read_text())
    # Defaults resolved: the cohort says which guidance made it even when none was asked for.
    assert info["sampling"] == {"sampler": "dpm++", "steps": 3, "clip": True, "eta": None,
                                "timestep_spacing": "trailing",
                                "guidance_scale": m.config.sampling.guidance_scale}
    assert info["model_sha256"] == sha256_file(run / "model.safetensors") == m.model_hash
    prov = info["provenance"]
    assert prov["seed"] == 7 and prov["model_sha256"] == m.model_hash and "torch" in prov["packages"]
    assert prov["config"]["labels"]["prevalence"] == {"Mass": 0.5} and prov["model_config"]["seed"] == 0
