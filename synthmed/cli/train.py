"""`synthmed train DATASET --config F --out RUN [--resume]`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthmed.cli.app import app
from synthmed.cli.options import check_int, check_out_folder


@app.command("train")
def train_cmd(
    dataset: Path = typer.Argument(..., help="dataset folder written by `synthmed ingest`"),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="training config: a shipped name (`synthmed configs`, e.g. demo, cxr-64) or a YAML path"),
    out: Path = typer.Option(..., "--out", "-o", help="run folder to write"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run's last checkpoint"),
    steps: Optional[int] = typer.Option(None, "--steps", help="override the config's steps"),
) -> None:
    """Train a conditional diffusion model on the dataset's train split (the holdout is never read)."""
    from synthmed.config import load_config, resolve_config_path
    from synthmed.models import TrainConfig, run_training
    from synthmed.progress import console

    check_out_folder(out)
    check_int(steps, "--steps", 1)
    cfg = load_config(resolve_config_path(config, "train"), TrainConfig,
                      overrides={"steps": steps} if steps is not None else None)
    result = run_training(dataset, cfg, out, resume=resume)
    if result.rank == 0:  # under torchrun, one summary (rank 0's, the one with the model hash)
        console.print(result.summary())
