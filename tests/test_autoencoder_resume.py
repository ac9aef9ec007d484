"""The autoencoder stage of latent training checkpoints and resumes like the diffusion stage: a run
stopped in that stage and resumed gives the same bytes as one that never stopped."""

from __future__ import annotations

import json

import pytest

from helpers_dataset import make_toy_dataset
from synthmed.config import validate_config
from synthmed.errors import InputError
from synthmed.models import TrainConfig, train
from synthmed.models.checkpoint import CheckpointError
from synthmed.provenance import sha256_file
from test_models import one_thread  # noqa: F401 (one_thread: autouse fixture)


def latent_config(**over) -> TrainConfig:
    base = {"steps": 2, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1, "log_every": 1,
            "checkpoint_every": 2, "sample_every": 0, "sample_grid": 2, "threads": 1,
            "network": {"channels": [8, 16], "attention_levels": [False, True],
                        "num_head_channels": 8, "norm_num_groups": 8, "context_dim": 8},
            "sampling": {"steps": 2},
            "latent": {"enabled": True, "channels": [8, 8], "norm_num_groups": 8, "steps": 5,
                       "batch_size": 4, "latent_channels": 2}}
    base.update(over)
    return validate_config(base, TrainConfig)


def test_kill_in_the_autoencoder_stage_then_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    ds = make_toy_dataset(tmp_path / "ds", n_patients=6, images_per_patient=2, shape=(8, 8))
    cfg = latent_config()
    full = train(ds, cfg, tmp_path / "full")

    import synthmed.models.autoencoder as ae_mod
    import synthmed.models.trainer as trainer

    real_save, real_train = trainer.save_checkpoint, ae_mod.train_autoencoder
    cut = tmp_path / "cut"

    def save_then_crash(root, step, *a, **k):
        real_save(root, step, *a, **k)
        if root.name == "checkpoint-autoencoder" and step == 4:
            raise KeyboardInterrupt  # killed right after the stage's second checkpoint

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(ds, cfg, cut)
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    assert not (cut / "autoencoder.safetensors").exists()
    assert (cut / "checkpoint-autoencoder" / "latest").read_text().strip() == "step_00000004"
    with pytest.raises(InputError, match="resume=True"):
        train(ds, cfg, cut)  # a run in its first stage is still a run: not overwritten

    starts = []

    def spy(*a, **k):
        starts.append(k.get("start_step", 0))
        return real_train(*a, **k)

    monkeypatch.setattr(ae_mod, "train_autoencoder", spy)
    train(ds, cfg, cut, resume=True)
    assert starts == [4]  # only the last autoencoder step was trained again
    for name in ("autoencoder.safetensors", "model.safetensors"):
        assert sha256_file(cut / name) == sha256_file(full / name), name
    a, b = (json.loads((r / "autoencoder.json").read_text()) for r in (full, cut))
    assert a == b
    assert not (cut / "checkpoint-autoencoder").exists()  # the finished stage's checkpoint is gone


def test_autoencoder_checkpoint_of_another_config_is_refused(tmp_path, monkeypatch):
    ds = make_toy_dataset(tmp_path / "ds", n_patients=6, images_per_patient=2, shape=(8, 8))
    import synthmed.models.trainer as trainer

    real_save = trainer.save_checkpoint

    def save_then_crash(root, step, *a, **k):
        real_save(root, step, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(ds, latent_config(), tmp_path / "run")
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    other = latent_config(latent={"enabled": True, "channels": [8, 8], "norm_num_groups": 8,
                                  "steps": 5, "batch_size": 4, "latent_channels": 2, "lr": 5e-4})
    with pytest.raises(CheckpointError, match="autoencoder checkpoint was made with a different"):
        train(ds, other, tmp_path / "run", resume=True)


@pytest.mark.slow
def test_kill_9_of_the_cli_in_the_autoencoder_stage_then_resume(tmp_path):
    """The same with a real `kill -9` of a `synthmed train` process, once its checkpoint appears."""
    import os
    import subprocess
    import sys
    import time

    import yaml

    ds = make_toy_dataset(tmp_path / "ds", n_patients=8, images_per_patient=2, shape=(16, 16))
    cfg = latent_config(steps=4, checkpoint_every=20).model_dump(mode="json")
    cfg["latent"]["steps"] = 120  # killed at step 20-40: far from the end, so the kill lands in the stage
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SYNTHMED_NO_PROGRESS": "1"}

    def cli(out, *extra):
        return [sys.executable, "-c", "from synthmed.cli import main; main()", "train", str(ds),
                "--config", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / out), *extra]

    subprocess.run(cli("full"), env=env, check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(cli("cut"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = tmp_path / "cut" / "checkpoint-autoencoder" / "latest"
    deadline = time.monotonic() + 600
    while not (latest.is_file() and latest.read_text().strip() == "step_00000020"):
        assert proc.poll() is None and time.monotonic() < deadline, "no stage checkpoint appeared"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert not (tmp_path / "cut" / "autoencoder.safetensors").exists()
    subprocess.run(cli("cut", "--resume"), env=env, check=True, capture_output=True, timeout=600)
    for name in ("autoencoder.safetensors", "model.safetensors"):
        assert sha256_file(tmp_path / "cut" / name) == sha256_file(tmp_path / "full" / name), name
