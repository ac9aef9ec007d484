"""`synthmed canaries --dataset D --config C --out O --canaries K`: does the audit have teeth?

Plants K canaries (holdout patients' images, a share of them copied 1, 10 and 100 times) into
the train split, trains the config on it, and reports how well each attack finds them
(synthmed.audit.canaries). `synthmed audit --model RUN --canaries K` runs the same audit with
the training config RUN recorded; this command takes any config (`--config`), and `--steps`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthmed.cli.app import app
from synthmed.cli.options import check_int, check_out_folder, check_seed


@app.command("canaries")
def canaries_command(
    dataset: Path = typer.Option(..., "--dataset", help="ingested dataset folder (its holdout patients provide canaries and controls)"),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="training config (shipped name or YAML path)"),
    out: Path = typer.Option(..., "--out", help="folder for canaries.json / .md / .png and the canary model (run/)"),
    canaries: int = typer.Option(30, "--canaries", help="number of canaries K"),
    duplicates: str = typer.Option("1,10,100", "--duplicates", help="copies per canary, comma-separated (canaries are shared out among them)"),
    profile: Optional[str] = typer.Option(None, "--profile", help="audit profile whose whitebox: settings are used"),
    steps: Optional[int] = typer.Option(None, "--steps", help="override the config's steps"),
    seed: int = typer.Option(0, "--seed", help="seed of the canary choice and the attacks"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace what is in --out"),
) -> None:
    """Plant canaries, train, and measure how well each membership attack finds them."""
    from synthmed.api import canaries as run_canaries
    from synthmed.config import resolve_config_path

    check_out_folder(out)
    check_int(canaries, "--canaries", 1)
    check_int(steps, "--steps", 1)
    check_seed(seed)
    rec = run_canaries(dataset, out, config=resolve_config_path(config, "train"), k=canaries,
                       duplicates=parse_duplicates(duplicates), profile=profile,
                       overrides={"steps": steps} if steps is not None else None, seed=seed,
                       overwrite=overwrite)
    print_canaries(rec)


def parse_duplicates(text: str) -> tuple[int, ...]:
    from synthmed.errors import InputError

    try:
        dups = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--duplicates {text!r}: give whole numbers separated by commas, e.g. 1,10,100") from None
    if not dups or min(dups) < 1:
        raise InputError(f"--duplicates {text!r}: every count must be at least 1")
    return dups


def print_canaries(result) -> None:
    from synthmed.progress import console

    console.print(result.summary(), highlight=False)
    out = result.out
    console.print(f"wrote {out / 'canaries.json'}, {out / 'canaries.md'} and {out / 'canaries.png'}")
