"""`evaluate_cohort` / `synthmed evaluate --synthetic`: a cohort read against its real dataset.

Known answers on toy data (tests/helpers_dataset.py: each image's brightness follows the age,
its body width the sex, and every finding is a bright spot at its own place):
- a cohort of fresh REAL patients (the reference split, with their own records as the manifest)
  lands inside every floor, and its conditions are read as well as real holdout images are;
- the same cohort collapsed onto three images sits past the Fréchet, recall, coverage and
  MS-SSIM floors; the same images with the manifest's findings shuffled agree with it at chance.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers_browser import CHROMIUM_FLAGS, chromium
from helpers_dataset import make_toy_dataset
from synthmed.cli import main
from synthmed.data.cohort import write_cohort
from synthmed.data.dataset import Dataset
from synthmed.data.records import CohortRecord
from synthmed.errors import ConfigError, InputError
from synthmed.evaluate.cohort import evaluate_cohort
from synthmed.evaluate.config import resolve_eval_config

# small budgets: the read-outs are the same code at any size
SMALL = {"encoder": {"steps": 40, "batch_size": 32},
         "fidelity": {"n_pairs": 60, "n_boot": 20},
         "conditions": {"epochs": 25, "n_boot": 100},
         "utility": {"channels": [8, 16, 16], "steps": 40, "batch_size": 32, "lr": 0.005,
                     "n_bootstrap": 100}}
NO_UTILITY = {"utility": None}


def _cohort(root: Path, ds: Dataset, idx: np.ndarray, images=None, labels=None, **info) -> Path:
    """A cohort folder of real images `idx` (or `images`), the manifest from their own records."""
    recs = [ds.records[j] for j in idx]
    labels = [r.labels for r in recs] if labels is None else labels
    rows = [CohortRecord(index=i, patient=f"SYN-{k:06d}", labels=tuple(lab), age=r.age, sex=r.sex)
            for i, (k, r, lab) in enumerate(zip(_patient_numbers(recs), recs, labels))]
    x = np.asarray(ds.images[idx], np.float32) if images is None else images
    return write_cohort(root, x, rows, {"dataset_fingerprint": ds.fingerprint(), **info})


def _patient_numbers(recs) -> list[int]:
    order: dict[str, int] = {}
    return [order.setdefault(r.patient, len(order)) for r in recs]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalcohort")
    root = make_toy_dataset(tmp / "ds", n_patients=160, images_per_patient=2, shape=(24, 24),
                            split_fractions=(0.5, 0.25, 0.25), seed=3)
    ds = Dataset.open(root)
    ref = ds.indices("reference")
    real = _cohort(tmp / "real", ds, ref)
    cfg = resolve_eval_config(None, SMALL)
    res = evaluate_cohort(root, real, tmp / "eval-real", config=cfg, seed=0)
    return tmp, ds, ref, cfg, res


def _within(block, metric, widen=1.7):
    """Inside the floor's 95 % interval widened to ~3.3 sd, as in test_evaluate_metrics.py: six
    numbers are checked at once, so each needs a miss rate well under 5 %."""
    iv = block["floor"]["metrics"][metric]
    centre, half = (iv["low"] + iv["high"]) / 2, (iv["high"] - iv["low"]) / 2
    return abs(block["synthetic"][metric] - centre) <= widen * half


def test_fresh_real_patients_sit_at_every_floor(toy):
    _, ds, ref, _, res = toy
    fid = res.record["fidelity"]
    assert _within(fid["frechet"], "value")
    for m in ("precision", "recall", "density", "coverage"):
        assert _within(fid["prdc"], m), m
    assert _within(fid["ms_ssim"], "ms_ssim")
    # per condition, each with its own floor (the toy findings are common enough to score)
    assert {"No Finding", "Effusion", "Mass"} <= set(fid["by_condition"])
    assert all("frechet" in v for v in fid["by_condition"].values())
    # the holdout is cut to whole patients within the cohort's size (80 images)
    assert fid["holdout_used"]["images"] <= ref.size
    cond = res.record["conditions"]
    for f in ("finding: Effusion", "finding: Mass"):
        a = cond[f]
        assert a["agreement"] > a["chance"] + 0.2 and a["kappa"] > 0.5, a
        assert a["low"] <= a["agreement"] <= a["high"]
        assert abs(a["agreement"] - a["real"]) < 0.15  # read as well as real holdout images
    # the toy's brightness follows the age: readable above chance
    assert cond["age group"]["agreement"] > cond["age group"]["chance"]
    assert cond["sex"]["classes"] == ["F", "M"]
    # utility: fresh real patients with their true labels are as useful as the real train split
    util = res.record["utility"]
    assert set(util["regimes"]) == {"real", "synthetic", "real+synthetic", "synthetic->real"}
    assert util["macro_labels"] == ["Effusion", "Mass"]
    assert util["regimes"]["real"]["macro_auc"]["value"] > 0.8
    assert util["tstr_trtr"]["value"] > 0.85, util["tstr_trtr"]


def test_collapsed_and_mislabelled_cohorts_read_worse(toy):
    tmp, ds, ref, cfg, real = toy
    x = np.asarray(ds.images[ref], np.float32)
    # mode collapse: every image one of three real images (with imperceptible noise)
    rng = np.random.default_rng(1)
    few = x[[0, 10, 20]][rng.integers(0, 3, len(x))] + rng.normal(0, 0.002, x.shape).astype(np.float32)
    collapsed = _cohort(tmp / "collapsed", ds, ref, images=np.clip(few, 0, 1))
    # the one encoder: the first evaluation's, reused as local weights
    enc = real.out / "encoder"
    c = evaluate_cohort(ds, collapsed, tmp / "eval-collapsed", config=cfg.model_copy(update={
        "conditions": cfg.conditions.model_copy(update={"enabled": False}), "utility": None}),
        encoder=enc, seed=0).record
    fid = c["fidelity"]
    floor = {k: fid[k]["floor"]["metrics"] for k in ("frechet", "prdc", "ms_ssim")}
    assert fid["frechet"]["synthetic"]["value"] > floor["frechet"]["value"]["high"]
    assert fid["prdc"]["synthetic"]["recall"] < floor["prdc"]["recall"]["low"]
    assert fid["prdc"]["synthetic"]["coverage"] < floor["prdc"]["coverage"]["low"]
    assert fid["ms_ssim"]["synthetic"]["ms_ssim"] > floor["ms_ssim"]["ms_ssim"]["high"]
    assert c["encoder"]["source"] == "given"
    assert c["conditions"] == {"not_evaluated": "conditions.enabled is false in the config"}
    assert c["utility"] == {"not_evaluated": "utility is null in the config"}
    # findings shuffled between images: the manifest no longer says what the images show
    rng = np.random.default_rng(0)
    labs = [ds.records[j].labels for j in ref]
    shuffled = [labs[i] for i in rng.permutation(len(labs))]
    wrong = _cohort(tmp / "wrong", ds, ref, labels=shuffled)
    w = evaluate_cohort(ds, wrong, tmp / "eval-wrong", config=cfg.model_copy(update={
        "fidelity": cfg.fidelity.model_copy(update={"per_condition": False})}), encoder=enc, seed=0).record
    for f in ("finding: Effusion", "finding: Mass"):
        a, r = w["conditions"][f], real.record["conditions"][f]
        assert a["kappa"] < 0.3 < r["kappa"], (a, r)
        assert a["low"] < a["chance"] + 0.1
    # and a classifier trained on them learns nothing that holds on real patients
    ratio, real_ratio = w["utility"]["tstr_trtr"]["value"], real.record["utility"]["tstr_trtr"]["value"]
    assert ratio < 0.8 and ratio < real_ratio - 0.15, (ratio, real_ratio)


def test_outputs_are_self_contained_and_name_no_patient(toy):
    _, ds, _, _, res = toy
    out = res.out
    rec = json.loads((out / "evaluation.json").read_text())
    assert rec["schema"] == "synthmed.cohort-evaluation/1"
    assert rec["provenance"]["config"]["encoder"]["steps"] == 40  # the settings actually used
    assert rec["encoder"]["source"] == "trained on the train split" and len(rec["encoder"]["sha256"]) == 64
    page = (out / "report.html").read_text()
    srcs = re.findall(r"src=['\"]([^'\"]+)", page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    assert "INTERNAL" in page and "Fréchet distance" in page and "Condition agreement" in page
    assert "TSTR / TRTR" in page and "ROC curves of the utility classifiers" in page
    # a ratio to a baseline at chance is flagged, never read (here the baseline is well above)
    from synthmed.evaluate.cohort import baseline_at_chance

    assert "Caution" not in page and not baseline_at_chance(rec["utility"])
    assert baseline_at_chance({"regimes": {"real": {"macro_auc": {"value": 0.55, "low": 0.45}}}})
    text = (out / "evaluation.json").read_text() + page
    for p in ds.patients():
        assert p not in text
    assert str(ds.root) not in text
    # the saved encoder is the audit's: same code, settings and seed give the same weights
    from synthmed.audit.embeddings import ContrastiveEncoder, load_embedder

    tr = np.asarray(ds.images[ds.indices("train")], np.float32)
    audit_like = ContrastiveEncoder(2, ds.shape, dim=128, seed=0).fit(tr, steps=40, batch_size=32)
    saved = load_embedder(out / "encoder")
    assert np.array_equal(audit_like.embed(tr[:16]), saved.embed(tr[:16]))
    assert "Fréchet distance" in res.summary() and "condition agreement" in res.summary()


def test_same_inputs_same_bytes_and_missing_metadata_is_named(toy):
    tmp, ds, ref, _, real = toy
    cfg = resolve_eval_config(None, {"fidelity": {"n_pairs": 30, "n_boot": 4,
                                                                          "per_condition": False},
                                     "conditions": {"epochs": 2}, "report": {"real_grids": False},
                                     **NO_UTILITY})
    # a manifest without sex or age (as a cohort sampled without them would be)
    recs = [CohortRecord(index=i, patient=f"SYN-{i:06d}", labels=ds.records[j].labels)
            for i, j in enumerate(ref)]
    bare = write_cohort(tmp / "bare", np.asarray(ds.images[ref]), recs, {})
    a = evaluate_cohort(ds, bare, tmp / "e1", config=cfg, encoder=real.out / "encoder", seed=1)
    b = evaluate_cohort(ds, bare, tmp / "e2", config=cfg, encoder=real.out / "encoder", seed=1)
    assert (tmp / "e1" / "evaluation.json").read_bytes() == (tmp / "e2" / "evaluation.json").read_bytes()
    assert a.record["conditions"]["sex"] == {"not_available": "the cohort's manifest gives no sex"}
    assert a.record["conditions"]["age group"] == {"not_available": "the cohort's manifest gives no age"}
    page = (tmp / "e1" / "report.html").read_text()
    assert "INTERNAL" not in page  # no real image on it
    assert b.record == a.record


def test_shipped_configs_validate_and_the_default_is_the_code_default():
    from synthmed.evaluate.config import CohortEvalConfig

    assert resolve_eval_config() == resolve_eval_config("evaluate") == CohortEvalConfig()
    quick = resolve_eval_config("evaluate-quick")
    assert quick.encoder.steps < CohortEvalConfig().encoder.steps and quick.utility.steps <= 10
    # the encoder is the audit's: same settings as the shipped public audit profile
    from synthmed.audit.profile import AuditProfile
    from synthmed.config import find_shipped_config, load_config

    audit = load_config(find_shipped_config("audit-public").path, AuditProfile)
    assert CohortEvalConfig().encoder == audit.embedding
    with pytest.raises(ConfigError, match="age_edges"):
        resolve_eval_config(None, {"conditions": {"age_edges": [60, 40]}})


def test_bad_inputs_are_one_line(toy, tmp_path):
    _, ds, ref, cfg, _ = toy
    small = write_cohort(tmp_path / "small", np.zeros((4, 8, 8), np.float32),
                         [CohortRecord(index=i, patient=f"SYN-{i:06d}") for i in range(4)], {})
    with pytest.raises(InputError, match="cohort images are 8x8 but the dataset's are 24x24"):
        evaluate_cohort(ds, small, tmp_path / "e", config=cfg)
    other = _cohort(tmp_path / "other", ds, ref[:30])
    info = json.loads((other / "cohort.json").read_text())
    assert info["dataset_fingerprint"] == ds.fingerprint()
    shutil.rmtree(other)
    recs = [CohortRecord(index=i, patient=f"SYN-{i:06d}") for i in range(30)]
    other = write_cohort(tmp_path / "other", np.asarray(ds.images[ref[:30]]), recs,
                         {"dataset_fingerprint": "f" * 64})
    with pytest.raises(InputError, match="is not the dataset the cohort's model was trained on"):
        evaluate_cohort(ds, other, tmp_path / "e", config=cfg)
    typo = tmp_path / "typo.yaml"
    typo.write_text("fidelity: {kk: 1}\n")
    with pytest.raises(ConfigError, match="typo.yaml: unknown key 'fidelity.kk'; allowed keys: k, "):
        evaluate_cohort(ds, other, tmp_path / "e", config=typo)
    assert not (tmp_path / "e").exists()


def test_cli_synthetic_and_run_are_exclusive(toy, tmp_path, capsys):
    tmp, ds, ref, _, res = toy
    cohort = tmp / "real"
    for argv in (["evaluate", "--dataset", str(ds.root), "--out", str(tmp_path / "e")],
                 ["evaluate", str(tmp_path), "--dataset", str(ds.root), "--synthetic", str(cohort),
                  "--out", str(tmp_path / "e")]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "exactly one of RUN or --synthetic" in err and "\n" not in err
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--dataset", str(ds.root), "--synthetic", str(cohort), "--out", str(tmp_path / "e"),
              "--config", str(tmp_path / "nope.yaml")])
    assert e.value.code == 2 and "nope.yaml: config file does not exist" in capsys.readouterr().err
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("fidelity: {n_pairs: 20, n_boot: 3, per_condition: false}\n"
                   "conditions: {enabled: false}\nutility: null\n")
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--dataset", str(ds.root), "--synthetic", str(cohort), "--out", str(tmp_path / "e"),
              "--config", str(cfg), "--encoder", str(res.out / "encoder")])
    assert e.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "cohort evaluation: 80 synthetic images" in printed and "report.html" in printed
    assert (tmp_path / "e" / "evaluation.json").is_file()


def test_report_renders_in_headless_chromium(toy, tmp_path):
    exe = chromium()
    page = toy[4].out / "report.html"
    shot = tmp_path / "shot.png"
    common = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    subprocess.run([exe, *common, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
                   capture_output=True, timeout=120)
    from PIL import Image

    with Image.open(shot) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.float32)
    assert a.shape[0] >= 2000 and a.std() > 10  # not a blank page
    # the red INTERNAL banner at the top
    top = a[: a.shape[0] // 10]
    assert np.any((top[..., 0] > 150) & (top[..., 1] < 80) & (top[..., 2] < 80))


def test_volumes_are_read_slice_wise(tmp_path):
    root = make_toy_dataset(tmp_path / "ds3", n_patients=48, images_per_patient=1, shape=(16, 16, 16),
                            split_fractions=(0.5, 0.25, 0.25), seed=4)
    ds = Dataset.open(root)
    cohort = _cohort(tmp_path / "c3", ds, ds.indices("reference"))
    cfg = resolve_eval_config(None, {"encoder": {"steps": 3, "batch_size": 8},
                                     "fidelity": {"n_pairs": 20, "n_boot": 4, "per_condition": False},
                                     "conditions": {"enabled": False}, **NO_UTILITY})
    rec = evaluate_cohort(ds, cohort, tmp_path / "e3", config=cfg, seed=0).record
    assert rec["encoder"]["spatial_dims"] == 3 and rec["encoder"]["slicewise"] is False
    ms = rec["fidelity"]["ms_ssim"]
    # MS-SSIM on volumes is the 2.5D read-out: the settings of a 16 x 16 slice (one scale)
    assert ms["floor"]["n_candidate"] == 12 and 0 < ms["synthetic"]["ms_ssim"] < 1
    page = (tmp_path / "e3" / "report.html").read_text()
    assert "MS-SSIM" in page
    # a 2D encoder given for volumes reads them slice-wise (2.5D): one vector per volume from
    # 3 planes x 3 slices, slices resized to the encoder's input
    from synthmed.audit.embeddings import ContrastiveEncoder

    slices = np.asarray(ds.images[ds.indices("train")])[:, 8]
    enc2d = ContrastiveEncoder(2, (12, 12), dim=16, seed=0)
    enc2d.fit(np.stack([ndi_zoom(s) for s in slices]), steps=3, batch_size=8)
    enc2d.save(tmp_path / "enc2d")
    rec2 = evaluate_cohort(ds, cohort, tmp_path / "e4", config=cfg, encoder=tmp_path / "enc2d", seed=0).record
    assert rec2["encoder"]["slicewise"] is True and rec2["encoder"]["spatial_dims"] == 2
    assert rec2["fidelity"]["prdc"]["floor"]["n_candidate"] == 12
    assert rec2["fidelity"]["frechet"]["synthetic"] != rec["fidelity"]["frechet"]["synthetic"]


def ndi_zoom(image):
    """A 16 x 16 slice resized to 12 x 12 (the 2D encoder's input)."""
    from scipy import ndimage

    return ndimage.zoom(image, 0.75, order=1).astype(np.float32)


class _Blocks:
    """4x4 block means: a fixed feature map (the product trains the audit's encoder)."""

    name = "blocks"

    def embed(self, images):
        x = np.asarray(images, np.float64)
        n, h, w = x.shape
        return x.reshape(n, 4, h // 4, 4, w // 4).mean((2, 4)).reshape(n, -1)


def test_sweep_of_a_generator_is_an_evaluation_folder(tmp_path, capsys):
    import torch

    from helpers_generate import fit_gaussian_model
    from synthmed.evaluate.cohort import evaluate_sweep

    root = make_toy_dataset(tmp_path / "ds", n_patients=40, images_per_patient=2, shape=(16, 16), seed=3)
    ds = Dataset.open(root)
    tr = ds.require_split("train")
    model = fit_gaussian_model(np.asarray(ds.images[tr]), ds.label_matrix()[tr], k=12)
    with pytest.raises(InputError, match="is not the dataset the model was trained on"):
        evaluate_sweep(model, ds, tmp_path / "sw", [1, 4], n=12, encoder=_Blocks())
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = evaluate_sweep(model, ds, tmp_path / "sw", [1, 4], n=12, encoder=_Blocks(),
                             allow_other_dataset=True)
    finally:
        torch.set_num_threads(before)
    rec = json.loads((tmp_path / "sw" / "evaluation.json").read_text())
    assert [p["steps"] for p in rec["sweep"]["points"]] == [1, 4] and rec["other_dataset"]
    page = (tmp_path / "sw" / "report.html").read_text()
    assert "Sampler sweep" in page and page.count("<img ") == 1 and (tmp_path / "sw" / "sweep.png").is_file()
    assert "steps: Fréchet" in res.summary()
    # the CLI refuses a malformed list before any work, in one line
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(tmp_path / "RUN"), "--dataset", str(root), "--out", str(tmp_path / "o"),
              "--sweep-steps", "10,x"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--sweep-steps: '10,x' is not a list of whole step counts" in err and "\n" not in err
