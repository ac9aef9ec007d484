"""`evaluate_generator` / `synthmed evaluate`: the read-out must tell a generator that follows its
conditions from one that ignores them, and write nothing that names a path or a patient."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from helpers_dataset import make_toy_dataset, toy_image
from synthmed.cli import main
from synthmed.data.dataset import Dataset
from synthmed.errors import InputError
from synthmed.evaluate import evaluate_generator
from synthmed.models import train
from synthmed.models.sampling import SampleOutput, SamplingSettings
from test_models import one_thread, tiny_config  # noqa: F401 (one_thread: autouse fixture)

LABELS = ("Effusion", "Mass")


class ToyGenerator:
    """Stands in for a trained model: draws toy images (the dataset's own recipe), with the asked
    label's spot when `follows` is true, with a random label's spot otherwise."""

    def __init__(self, shape, follows: bool):
        self.shape = tuple(shape)
        self.follows = follows
        self.model_hash = "toy-" + ("follows" if follows else "ignores")
        self.config = SimpleNamespace(sampling=SimpleNamespace(guidance_scale=1.0, sampler="toy", steps=1),
                                      conditioning=SimpleNamespace(labels=True))
        self.calls: list = []

    def sample(self, n, conditions=None, steps=None, sampler=None, seed=0, batch_size=64,
               guidance_scale=None):
        self.calls.append((conditions, seed, guidance_scale))
        rng = np.random.default_rng(seed)
        asked = [LABELS.index(lab) for lab in (conditions or {}).get("labels", [])] if conditions else None
        out = []
        for _ in range(n):
            if asked is None:  # unconditional: the data's own mix
                present = [j for j in range(len(LABELS)) if rng.random() < 0.4]
            elif self.follows:
                present = asked
            else:
                present = [int(rng.integers(len(LABELS)))] if rng.random() < 0.67 else []
            out.append(toy_image(self.shape, present, float(rng.integers(20, 90)),
                                 str(rng.choice(["F", "M"])), rng, len(LABELS)))
        settings = SamplingSettings(sampler="toy", steps=1, clip=False, eta=None,
                                    timestep_spacing="none",
                                    guidance_scale=1.0 if guidance_scale is None else guidance_scale)
        return SampleOutput(np.stack(out), settings)


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    root = make_toy_dataset(tmp_path_factory.mktemp("eval"), n_patients=60, images_per_patient=2,
                            shape=(16, 16), labels=LABELS, seed=3, split_fractions=(0.6, 0.4, 0.0))
    return Dataset.open(root)


def test_a_generator_that_follows_its_conditions_is_told_from_one_that_ignores_them(toy_data, tmp_path):
    good_model = ToyGenerator(toy_data.shape, follows=True)
    good = evaluate_generator(good_model, toy_data, tmp_path / "good", n=40, guidance=[1.0, 3.0],
                              seed=0)
    bad = evaluate_generator(ToyGenerator(toy_data.shape, follows=False), toy_data, None, n=40,
                             seed=0)
    assert sorted(good["labels"]) == ["Effusion", "Mass"]
    assert set(good["by_guidance"]) == {"1.0", "3.0"}
    # Each guidance scale reaches the generator, and every condition is sampled at each.
    asked = {(json.dumps(c, sort_keys=True), g) for c, _, g in good_model.calls}
    for g in (1.0, 3.0):
        for cond in ({"labels": []}, {"labels": ["Effusion"]}, {"labels": ["Mass"]}):
            assert (json.dumps(cond, sort_keys=True), g) in asked

    for instrument in ("train-split classifier", "holdout-split classifier"):
        g_res = good["by_guidance"]["1.0"][instrument]
        b_res = bad["by_guidance"]["1.0"][instrument]
        for lab in LABELS:
            assert g_res["label_rates"][lab]["above_chance"], (instrument, lab, g_res["label_rates"][lab])
            r = g_res["label_rates"][lab]
            assert r["rate"] > 1.5 * r["chance_rate"] and r["contrast_p_value"] < 1e-3
        a = g_res["assignment"]["with_no_finding"]
        assert a["accuracy"] > 0.6 and a["p_value"] < 0.001 and a["chance"] == pytest.approx(1 / 3, abs=0.05)
        a_bad = b_res["assignment"]["findings_only"]
        assert abs(a_bad["accuracy"] - a_bad["chance"]) < 0.2 and a_bad["p_value"] > 0.01
    # The two instruments are calibrated on the split they did not learn from.
    inst = good["instruments"]
    assert inst["train-split classifier"]["calibrated_on"] == "holdout"
    assert inst["holdout-split classifier"]["trained_on"] == "holdout"

    # Fidelity is reported next to its floor; files are written, and no path is in the record.
    fid = good["fidelity"]
    assert fid["noise_vs_train"]["feature_frechet"] > 3 * fid["synthetic_vs_train"]["feature_frechet"]
    div = fid["ms_ssim_diversity"]  # beside its floor, an interval around the holdout's mean
    assert 0 <= div["synthetic"] <= 1 and div["floor_low"] <= div["holdout_floor"] <= div["floor_high"]
    assert (tmp_path / "good" / "samples.png").is_file() and not (tmp_path / "good" / "real.png").exists()
    text = (tmp_path / "good" / "evaluation.json").read_text()
    assert str(toy_data.root) not in text and str(tmp_path) not in text
    assert json.loads(text)["schema"] == "synthmed.evaluation/1"


def test_bad_requests_get_clear_errors(toy_data):
    model = ToyGenerator(toy_data.shape, follows=True)
    with pytest.raises(InputError, match="not findings of this dataset"):
        evaluate_generator(model, toy_data, None, labels=["Pneumonia"], n=4)
    with pytest.raises(InputError, match="shape"):
        evaluate_generator(ToyGenerator((8, 8), True), toy_data, None, n=4)
    model.config.conditioning.labels = False
    with pytest.raises(InputError, match="without label conditioning"):
        evaluate_generator(model, toy_data, None, labels=["Mass"], n=4)


def test_cli_evaluates_a_trained_run(tmp_path, capsys):
    ds = make_toy_dataset(tmp_path / "ds", n_patients=12, images_per_patient=2, shape=(8, 8), seed=4,
                          labels=LABELS, split_fractions=(0.6, 0.4, 0.0))
    run = train(ds, tiny_config(steps=2, batch_size=4), tmp_path / "run")
    out = tmp_path / "eval"
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(run), "--dataset", str(ds), "--out", str(out), "--n", "4", "--steps", "2",
              "--guidance", "1", "--guidance", "2", "--real-grid"])
    assert e.value.code == 0
    record = json.loads((out / "evaluation.json").read_text())
    assert record["guidance"] == [1.0, 2.0] and record["n_per_condition"] == 4
    assert (out / "samples.png").is_file() and (out / "real.png").is_file()
    printed = capsys.readouterr()
    assert "assigned among all" in printed.out + printed.err
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(run), "--dataset", str(ds), "--out", str(tmp_path / "e2"), "--labels", "Pneumonia"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Pneumonia" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unlabelled_3d_data_get_fidelity_only(tmp_path):
    ds = Dataset.open(make_toy_dataset(tmp_path / "vol", n_patients=8, images_per_patient=1,
                                       shape=(6, 10, 8), labels=(), seed=5,
                                       split_fractions=(0.5, 0.5, 0.0)))
    record = evaluate_generator(ToyGenerator(ds.shape, follows=True), ds, tmp_path / "out", n=4)
    assert "no finding labels" in record["conditioning"] and "by_guidance" not in record
    fid = record["fidelity"]
    assert "feature_frechet" not in fid["synthetic_vs_train"]  # no labels, no classifier features
    assert fid["noise_vs_train"]["intensity_w1"] > fid["holdout_vs_train_floor"]["intensity_w1"]
    # 6-voxel slices are smaller than the 7-px MS-SSIM kernel: said, not guessed
    assert "smaller than" in fid["ms_ssim_diversity"]["note"]
    assert (tmp_path / "out" / "samples.png").is_file()
    with pytest.raises(InputError, match="no finding labels"):
        evaluate_generator(ToyGenerator(ds.shape, follows=True), ds, None, labels=["Mass"], n=4)
