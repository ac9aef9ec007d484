"""Long stages speak when stderr is not a terminal: one line at start, at a steady interval, and at
the end, with count, ETA and fields; silent under SYNTHMED_NO_PROGRESS (as in this suite)."""

from __future__ import annotations

import re

import pytest
import torch

from helpers_dataset import make_toy_dataset
from synthmed.progress import make_progress


@pytest.fixture
def logging_on(monkeypatch):
    monkeypatch.delenv("SYNTHMED_NO_PROGRESS", raising=False)
    monkeypatch.setenv("SYNTHMED_PROGRESS_EVERY", "0")


def _lines(err: str, name: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"synthmed: {name}:")]


def test_log_lines_at_start_interval_and_end(logging_on, capsys):
    with make_progress() as prog:
        task = prog.add_task("work", total=4, loss=float("nan"))
        for i in range(4):
            prog.update(task, advance=1, loss=1.0 / (i + 1))
    lines = _lines(capsys.readouterr().err, "work")
    assert len(lines) == 5, lines  # started, 3 in between, done
    assert lines[0].startswith("synthmed: work: 0/4 (0%)") and lines[0].endswith("started")
    assert re.search(r"2/4 \(50%\) elapsed 0:00:\d\d eta \d+:\d\d:\d\d loss 0.5$", lines[2])
    assert lines[-1].endswith("done") and "4/4 (100%)" in lines[-1]


def test_interval_is_respected(monkeypatch, capsys):
    monkeypatch.delenv("SYNTHMED_NO_PROGRESS", raising=False)
    monkeypatch.setenv("SYNTHMED_PROGRESS_EVERY", "3600")
    with make_progress() as prog:
        task = prog.add_task("work", total=100)
        for _ in range(100):
            prog.advance(task)
    lines = _lines(capsys.readouterr().err, "work")
    assert [line.split()[-1] for line in lines] == ["started", "done"]


def test_silent_under_no_progress(monkeypatch, capsys):
    monkeypatch.setenv("SYNTHMED_NO_PROGRESS", "1")
    monkeypatch.setenv("SYNTHMED_PROGRESS_EVERY", "0")
    with make_progress() as prog:
        task = prog.add_task("work", total=3)
        for _ in range(3):
            prog.advance(task)
    assert capsys.readouterr().err == ""


def test_quiet_progress_says_nothing_even_when_logging(logging_on, capsys):
    # a torchrun rank other than 0: the run's progress is rank 0's
    with make_progress(quiet=True) as prog:
        task = prog.add_task("work", total=3)
        for _ in range(3):
            prog.advance(task)
    assert capsys.readouterr().err == ""


def test_both_training_stages_and_sampling_log_progress(logging_on, tmp_path, capsys):
    from test_autoencoder_resume import latent_config

    from synthmed.generate import generate_cohort
    from synthmed.models import train

    torch.set_num_threads(1)
    ds = make_toy_dataset(tmp_path / "ds", n_patients=6, images_per_patient=2, shape=(8, 8))
    model_dir = train(ds, latent_config(), tmp_path / "run")
    from synthmed.models import load

    generate_cohort(load(model_dir), 3, tmp_path / "cohort", batch_size=2)
    err = capsys.readouterr().err
    for name, total in (("autoencoder", 5), ("train", 2), ("sample", 3)):
        lines = _lines(err, name)
        assert lines and lines[-1].endswith("done") and f"{total}/{total} (100%)" in lines[-1], (name, err)
        assert any(" eta " in line for line in lines), name
    assert re.search(r" loss \d", _lines(err, "autoencoder")[-1])  # the stage's L1, by name


def test_audit_logs_its_stages(logging_on, tmp_path, capsys):
    import numpy as np

    from helpers_nih import toy_dataset, write_plain_cohort
    from synthmed.audit import run_audit
    from synthmed.data.dataset import Dataset
    from test_audit_run import public_profile

    ds = toy_dataset(tmp_path / "ds", n_patients=84)
    d = Dataset.open(ds)
    cohort = write_plain_cohort(tmp_path / "c", np.asarray(d.images[d.indices("reference")]))
    run_audit(ds, cohort, public_profile(embedding={"steps": 5, "batch_size": 32}), tmp_path / "a", seed=0)
    err = capsys.readouterr().err
    encoder = _lines(err, "audit encoder")  # the encoder's fit speaks step by step, with its loss
    assert encoder[0].endswith("started") and encoder[-1].endswith("done"), err
    assert "5/5 (100%)" in encoder[-1] and re.search(r" loss \d", encoder[-1]), err
    lines = _lines(err, "membership attacks") + _lines(err, "aligned copy search (registration)")
    assert lines and lines[-1].endswith("done") and "(100%)" in lines[-1], err
