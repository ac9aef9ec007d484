"""Command-line values are checked like config values, before any work: no falsy zero, no NaN,
no `--out` that is a file, no resumed run relabelled with fewer steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers_dataset import make_toy_dataset
from synthmed.cli import main

TINY = {"steps": 4, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1, "log_every": 1,
        "checkpoint_every": 2, "sample_every": 0, "sample_grid": 2, "threads": 1,
        "network": {"channels": [8, 16], "attention_levels": [False, True], "num_head_channels": 8,
                    "norm_num_groups": 8, "context_dim": 8},
        "sampling": {"steps": 2}}


def _cli_error(capsys, args: list[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("synthmed: error:"), err
    return err


@pytest.fixture
def tiny(tmp_path):
    ds = make_toy_dataset(tmp_path / "ds", n_patients=6, images_per_patient=2, shape=(8, 8))
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    return tmp_path, ds, cfg


def test_train_steps_zero_is_refused_not_replaced_by_the_config(tiny, capsys):
    tmp, ds, cfg = tiny
    err = _cli_error(capsys, ["train", ds, "--config", cfg, "--out", tmp / "run", "--steps", "0"])
    assert "--steps: must be at least 1 (got 0)" in err
    assert not (tmp / "run").exists()


def test_resume_with_fewer_steps_than_the_checkpoint_is_refused(tiny, capsys):
    tmp, ds, cfg = tiny
    main_args = ["train", ds, "--config", cfg, "--out", tmp / "run"]
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in main_args])
    assert e.value.code in (0, None)
    capsys.readouterr()
    card = (tmp / "run" / "model_card.json").read_text()
    weights = (tmp / "run" / "model.safetensors").read_bytes()
    assert json.loads(card)["steps"] == 4
    err = _cli_error(capsys, main_args + ["--resume", "--steps", "2"])
    assert "already at step 4; steps = 2 is below it" in err
    assert (tmp / "run" / "model_card.json").read_text() == card  # nothing relabelled
    assert (tmp / "run" / "model.safetensors").read_bytes() == weights
    # the same number of steps is a finished run: nothing to do, nothing changes
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in main_args + ["--resume", "--steps", "4"]])
    assert e.value.code in (0, None)
    assert (tmp / "run" / "model.safetensors").read_bytes() == weights


@pytest.mark.parametrize("args, expect", [
    (["sample", "RUN", "--n", "0", "--out", "OUT"], "--n: must be at least 1 (got 0)"),
    (["sample", "RUN", "--n", "2", "--out", "OUT", "--batch-size", "0"], "--batch-size: must be at least 1"),
    (["sample", "RUN", "--n", "2", "--out", "OUT", "--sex-ratio", "nan"], "--sex-ratio: must be a finite number"),
    (["sample", "RUN", "--n", "2", "--out", "OUT", "--sex-ratio", "1.5"], "--sex-ratio: must be between 0 and 1"),
    (["sample", "RUN", "--n", "2", "--out", "OUT", "--labels", "Mass=nan"], "--labels Mass: must be a finite number"),
    (["sample", "RUN", "--n", "2", "--out", "OUT", "--labels", "Mass=inf"], "--labels Mass: must be a finite number"),
    (["sample", "RUN", "--n", "2", "--out", "OUT", "--age", "80-40"], "--age (high end): must be at least 80"),
    (["sample", "RUN", "--n", "2", "--out", "OUT", "--age", "40-nan"], "--age (high end): must be a finite"),
    (["sample", "RUN", "--n", "2", "--out", "OUT", "--seed", "-1"], "--seed: must be at least 0"),
    (["evaluate", "RUN", "--dataset", "DS", "--out", "OUT", "--n", "0"], "--n: must be at least 1"),
    (["evaluate", "RUN", "--dataset", "DS", "--out", "OUT", "--top", "0"], "--top: must be at least 1"),
    (["evaluate", "RUN", "--dataset", "DS", "--out", "OUT", "--batch-size", "0"], "--batch-size: must be at least 1"),
    (["audit", "--dataset", "DS", "--synthetic", "C", "--out", "OUT", "--seed", "-3"], "--seed: must be at least 0"),
    (["phantoms", "OUT", "--patients", "0"], "--patients: must be at least 1"),
    (["phantoms", "OUT", "--patients", "2", "--findings-rate", "nan"], "--findings-rate: must be a finite number"),
    (["phantoms", "OUT", "--patients", "2", "--size", "0"], "--size: must be at least 1"),
    (["demo", "--out", "OUT", "--patients", "0"], "--patients: must be at least 1"),
    (["inspect", "DS", "--seed", "-1"], "--seed: must be at least 0"),
    (["ingest", "DS", "--out", "OUT", "--workers", "0"], "--workers: must be at least 1"),
])
def test_numbers_are_checked_before_any_work(tmp_path, capsys, args, expect):
    # RUN / DS / C do not exist: the number is refused before any of them is opened
    args = [str(tmp_path / a) if a.isupper() else a for a in args]
    assert expect in _cli_error(capsys, args)
    assert not (tmp_path / "OUT").exists()


@pytest.mark.parametrize("command", [
    ["train", "DS", "--out", "FILE"],
    ["sample", "RUN", "--n", "2", "--out", "FILE"],
    ["evaluate", "RUN", "--dataset", "DS", "--out", "FILE"],
    ["audit", "--dataset", "DS", "--synthetic", "C", "--out", "FILE"],
    ["ingest", "SRC", "--out", "FILE"],
    ["demo", "--out", "FILE", "--keep"],
    ["phantoms", "FILE", "--patients", "2"],
])
def test_out_naming_an_existing_file_is_refused_first(tmp_path, capsys, command):
    (tmp_path / "FILE").write_text("keep me\n")
    (tmp_path / "SRC").mkdir()
    args = [str(tmp_path / a) if a.isupper() else a for a in command]
    err = _cli_error(capsys, args)
    assert f"{tmp_path / 'FILE'}: " in err and "names an existing file" in err
    assert (tmp_path / "FILE").read_text() == "keep me\n"


def test_train_out_existing_file_refused_before_training(tiny, capsys):
    tmp, ds, cfg = tiny
    (tmp / "f").write_text("x")
    err = _cli_error(capsys, ["train", ds, "--config", cfg, "--out", tmp / "f"])
    assert "names an existing file" in err


@pytest.fixture
def tiny_run(tiny, capsys):
    tmp, ds, cfg = tiny
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in ["train", ds, "--config", cfg, "--out", tmp / "run"]])
    assert e.value.code in (0, None)
    capsys.readouterr()
    return tmp, ds, tmp / "run"


@pytest.mark.parametrize("extra, expect", [
    (["--guidance", "nan"], "guidance"), (["--guidance", "inf"], "guidance"),
    (["--guidance", "-1"], "guidance"), (["--steps", "0"], "steps"),
])
def test_sampling_numbers_are_refused_on_a_real_run_and_nothing_is_written(tiny_run, capsys, extra,
                                                                           expect):
    """Issue 9: `--guidance nan` once wrote an all-NaN cohort and invalid JSON, exit 0; `-1` was
    accepted. With a real model in hand (so the run is opened), each is one line, exit 2, and
    neither the cohort nor the evaluation folder appears."""
    tmp, ds, run = tiny_run
    err = _cli_error(capsys, ["sample", run, "--n", "2", "--out", tmp / "c"] + extra)
    assert expect in err
    assert not (tmp / "c").exists()
    err = _cli_error(capsys, ["evaluate", run, "--dataset", ds, "--out", tmp / "e", "--n", "2"] + extra)
    assert expect in err
    assert not (tmp / "e").exists()


@pytest.mark.parametrize("module", ["synthmed", "synthmed.cli"])
def test_python_dash_m_runs_the_cli_with_its_one_line_errors(tmp_path, module):
    """`python -m synthmed` (and `-m synthmed.cli`) is the `synthmed` command, errors included:
    for an environment whose scripts folder is not on PATH."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}

    def run(*args):
        return subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    done = run("--help")
    assert done.returncode == 0 and f"python -m {module}" in done.stdout
    assert all(cmd in done.stdout for cmd in ("ingest", "train", "audit", "release", "demo"))
    done = run("train", str(tmp_path / "ds"), "--out", str(tmp_path / "run"), "--steps", "0")
    err = done.stderr.strip()
    assert done.returncode == 2 and err.startswith("synthmed: error: --steps: must be at least 1")
    assert len(err.splitlines()) == 1, err
