"""Bad folders and values are refused at the edge: one line naming the file and the problem, exit 2.

Each case is a folder a user (or a crash, or an editor) could really leave behind: a cohort scaled
by 1000, NaN or infinite pixels, a truncated images.npy, a dataset.json or cohort.json that is not
JSON or not ours, a manifest edited by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers_dataset import edit_manifest, make_toy_dataset
from helpers_nih import toy_dataset, write_plain_cohort
from synthmed.cli import main
from synthmed.data.cohort import Cohort
from synthmed.data.dataset import Dataset
from synthmed.errors import InputError
from synthmed.io.atomic import save_npy


def _cli_error(capsys, args: list[str]) -> str:
    """Run the CLI, expect exit 2 with exactly one line on stderr; return that line."""
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "internal error" not in err
    return err


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy(tmp_path):
    # big enough to be audited (21 holdout patients): without the checks the audit runs to a verdict
    ds = toy_dataset(tmp_path / "ds", n_patients=84)
    images = np.asarray(Dataset.open(ds).images)
    # the public profile's rules with cheaper measurement knobs (as tests/test_audit_run.py)
    profile = yaml.safe_load((ROOT / "configs" / "audit-public.yaml").read_text())
    profile["n_bootstrap"] = 200
    profile["embedding"]["steps"] = 10
    profile["memorisation"]["aligned"] = False
    profile["identity"]["enabled"] = False  # no re-identification network to train
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(profile))
    return tmp_path, ds, images


def _audit_args(tmp: Path, ds: Path, cohort: Path) -> list[str]:
    return ["audit", "--dataset", str(ds), "--synthetic", str(cohort), "--out", str(tmp / "audit"),
            "--profile", str(tmp / "profile.yaml")]


# -- values -----------------------------------------------------------------------------------

def _x1000(tmp: Path, ds: Path, images: np.ndarray) -> Path:
    train = images[Dataset.open(ds).indices("train")]
    return write_plain_cohort(tmp / "x1000", train[:30] * 1000)


def test_cohort_scaled_by_1000_is_refused_by_open(toy):
    tmp, ds, images = toy
    with pytest.raises(InputError, match=r"images\.npy: image 0 has values .*outside"):
        Cohort.open(_x1000(tmp, ds, images))


def test_cohort_scaled_by_1000_is_refused_by_audit(toy, capsys):
    # (before: the audit ran on it, and copies of training images scaled by 1000 passed)
    tmp, ds, images = toy
    err = _cli_error(capsys, _audit_args(tmp, ds, _x1000(tmp, ds, images)))
    assert "x1000" in err and "outside the normalised range [0, 1]" in err
    assert not (tmp / "audit" / "audit.json").exists()


def test_plain_folder_of_arrays_is_not_rescaled_into_range(tmp_path):
    (tmp_path / "c").mkdir()
    np.save(tmp_path / "c" / "a.npy", np.full((8, 8), 0.5, np.float32))
    np.save(tmp_path / "c" / "b.npy", np.full((8, 8), 500.0, np.float32))
    with pytest.raises(InputError, match=r"b\.npy: image 0 has values in \[500, 500\]"):
        Cohort.open(tmp_path / "c")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_cohort_pixels_are_refused(toy, capsys, bad):
    tmp, ds, images = toy
    synth = images[:30].copy()
    synth[7, 3, 4] = bad
    cohort = write_plain_cohort(tmp / "c", synth)
    err = _cli_error(capsys, _audit_args(tmp, ds, cohort))
    assert "image 7 holds" in err and ("NaN" if np.isnan(bad) else "infinite") in err


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1.5, -0.2])
def test_dataset_pixels_outside_range_are_refused(toy, capsys, bad):
    tmp, ds, images = toy
    images = images.copy()
    images[11, 0, 0] = bad
    save_npy(ds / "images.npy", images)
    with pytest.raises(InputError, match=r"images\.npy: image 11 "):
        Dataset.open(ds)
    err = _cli_error(capsys, ["inspect", str(ds)])
    assert "images.npy: image 11" in err


def test_dataset_range_comes_from_dataset_json(tmp_path):
    ds = make_toy_dataset(tmp_path / "d", n_patients=6)
    info = json.loads((ds / "dataset.json").read_text())
    info["normalisation"] = {"range": [0.0, 0.5]}
    (ds / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match=r"outside the normalised range \[0, 0.5\]"):
        Dataset.open(ds)


def test_value_check_reads_in_chunks_and_names_the_right_image(tmp_path):
    from synthmed.data.values import check_values

    a = np.zeros((50, 4, 4), np.float32)
    a[37, 1, 1] = np.nan
    with pytest.raises(InputError, match="image 37 holds NaN"):
        check_values(a, "x", chunk_bytes=64)  # 1 image per chunk: many chunks
    check_values(a[:37], "x", chunk_bytes=64)


# -- corrupt files -----------------------------------------------------------------------------

def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_images_npy_of_dataset_and_cohort(toy, capsys):
    tmp, ds, images = toy
    cohort = write_plain_cohort(tmp / "c", images[:30])
    _truncate(cohort / "images.npy")
    err = _cli_error(capsys, _audit_args(tmp, ds, cohort))
    assert "c/images.npy: not a readable .npy" in err
    _truncate(ds / "images.npy")
    err = _cli_error(capsys, ["inspect", str(ds)])
    assert "ds/images.npy: not a readable .npy" in err


@pytest.mark.parametrize("content, expect", [
    ("{not json", "dataset.json: not valid JSON"),
    ("[1, 2]", "dataset.json: expected a JSON object"),
    (json.dumps({"schema": "other/1", "spatial_dims": 2, "shape": [16, 16]}), "dataset.json: schema is 'other/1'"),
    (json.dumps({"schema": "synthmed.dataset/1", "shape": [16, 16]}), "dataset.json: missing key spatial_dims"),
    (json.dumps({"schema": "synthmed.dataset/1", "spatial_dims": 2, "shape": [8, 8]}), "images are (16, 16) but"),
    (json.dumps({"schema": "synthmed.dataset/1", "spatial_dims": "two", "shape": [16, 16]}), "dataset.json: invalid literal"),
])
def test_broken_dataset_json(toy, capsys, content, expect):
    tmp, ds, _ = toy
    (ds / "dataset.json").write_text(content)
    assert expect in _cli_error(capsys, ["inspect", str(ds)])


@pytest.mark.parametrize("content, expect", [
    ("not json", "cohort.json: not valid JSON"),
    ('"a string"', "cohort.json: expected a JSON object"),
    (json.dumps({"schema": "synthmed.dataset/1"}), "cohort.json: schema is 'synthmed.dataset/1'"),
    (json.dumps({"schema": "synthmed.cohort/1", "shape": "16x16"}), "cohort.json: shape must be a list"),
    (json.dumps({"schema": "synthmed.cohort/1", "shape": [32, 32]}), "images are (16, 16) but"),
])
def test_broken_cohort_json(toy, capsys, content, expect):
    tmp, ds, images = toy
    cohort = write_plain_cohort(tmp / "c", images[:30])
    (cohort / "cohort.json").write_text(content)
    assert expect in _cli_error(capsys, _audit_args(tmp, ds, cohort))


def _move_patient(rows):
    patient = next(r["patient"] for r in rows if r["split"] == "train")
    first = next(r for r in rows if r["patient"] == patient)
    first["split"] = "holdout"  # one of the patient's images moved across, the others stay
    return rows


def _set(i: int, key: str, value: str):
    def edit(rows):
        rows[i][key] = value
        return rows
    return edit


@pytest.mark.parametrize("edit, expect", [
    (_move_patient, "a patient is on two splits (holdout and train)"),
    (_set(5, "index", "4"), "line 7: index 4 appears twice"),
    (_set(5, "index", "999"), "line 7: index 999 is out of range"),
    (_set(5, "index", "five"), "manifest.csv: malformed row"),
    (_set(3, "split", "trian"), "line 5: unknown split 'trian'"),
])
def test_edited_dataset_manifest_is_refused(toy, capsys, edit, expect):
    tmp, ds, images = toy
    edit_manifest(ds / "manifest.csv", edit)
    with pytest.raises(InputError, match="manifest.csv"):
        Dataset.open(ds)
    cohort = write_plain_cohort(tmp / "c", images[:30])
    assert expect in _cli_error(capsys, _audit_args(tmp, ds, cohort))


def test_cohort_manifest_index_out_of_range(toy, capsys):
    tmp, ds, images = toy
    cohort = write_plain_cohort(tmp / "c", images[:30])
    edit_manifest(cohort / "manifest.csv", _set(2, "index", "30"))
    assert "line 4: index 30 is out of range" in _cli_error(capsys, _audit_args(tmp, ds, cohort))


def test_manifest_without_index_column(toy, capsys):
    tmp, ds, _ = toy
    (ds / "manifest.csv").write_text("a,b\n1,2\n")
    assert "manifest.csv: missing columns index, patient" in _cli_error(capsys, ["inspect", str(ds)])


# -- JSON is strict ----------------------------------------------------------------------------

def test_json_is_written_without_nan(tmp_path):
    from synthmed.io.atomic import write_json

    with pytest.raises(ValueError, match=r"x\.json: key 'a\.b\[1\]' is nan"):
        write_json(tmp_path / "x.json", {"a": {"b": [1.0, float("nan")]}})
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(ValueError, match="key 'v' is inf"):
        write_json(tmp_path / "x.json", {"v": np.float32("inf")})
    write_json(tmp_path / "y.json", {"auc": float("nan"), "n": 3}, nan_as_null=True)
    assert json.loads((tmp_path / "y.json").read_text()) == {"auc": None, "n": 3}


@pytest.mark.parametrize("bad", [np.nan, 1000.0])
def test_training_refuses_bad_train_pixels_without_reading_the_holdout(tmp_path, capsys, bad):
    ds = make_toy_dataset(tmp_path / "d", n_patients=6)
    d = Dataset.open(ds)
    images = np.asarray(d.images).copy()
    k = int(d.indices("train")[3])
    images[k] *= bad
    images[d.indices("holdout")] = np.nan  # never read by training, so never complained about
    save_npy(ds / "images.npy", images)
    from synthmed.io import folders

    folders.stamp(ds, "dataset")  # as the writer that produced these pixels would have
    err = _cli_error(capsys, ["train", str(ds), "--out", str(tmp_path / "run"), "--steps", "1"])
    assert f"images.npy: image {k} " in err
