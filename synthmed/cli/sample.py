"""`synthmed sample RUN --n N --out COHORT [--seed S] [--steps K] [--sampler ddim] ...`: the quick
path, one study per virtual patient, over the same code as `synthmed generate`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthmed.cli.app import app
from synthmed.cli.options import check_float, check_int, check_out_folder, check_seed
from synthmed.errors import InputError


def parse_label_rates(text: str | None) -> dict[str, float] | None:
    """'Effusion=0.3,Mass=0.1' -> {'Effusion': 0.3, 'Mass': 0.1}."""
    if not text:
        return None
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = check_float(float(value), f"--labels {name.strip()}", 0.0, 1.0)
        except ValueError:
            raise InputError(f"--labels: {part!r} is not NAME=RATE (e.g. Effusion=0.3)") from None
    return out


def parse_age_range(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    lo, sep, hi = text.partition("-")
    try:
        if not sep:
            raise ValueError
        low, high = float(lo), float(hi)
    except ValueError:
        raise InputError(f"--age: {text!r} is not a range like 40-80") from None
    check_float(low, "--age (low end)", 0.0)
    check_float(high, "--age (high end)", low)
    return low, high


@app.command("sample")
def sample_cmd(
    run: Path = typer.Argument(..., help="run folder written by `synthmed train`"),
    n: int = typer.Option(..., "--n", help="number of virtual patients"),
    out: Path = typer.Option(..., "--out", "-o", help="cohort folder to write"),
    seed: int = typer.Option(0, "--seed"),
    steps: Optional[int] = typer.Option(None, "--steps", help="sampler steps (default: the model's)"),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="dpm++ | ddim | ddpm (default: the model's)"),
    labels: Optional[str] = typer.Option(None, "--labels", help='label rates, e.g. "Effusion=0.3,Mass=0.1"'),
    age: Optional[str] = typer.Option(None, "--age", help="age range in years, e.g. 40-80"),
    sex_ratio: Optional[float] = typer.Option(None, "--sex-ratio", help="share of females, 0-1"),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="classifier-free guidance scale"),
    batch_size: int = typer.Option(64, "--batch-size"),
    formats: list[str] = typer.Option([], "--format", help="also write dicom | nifti | png (repeat for several)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the cohort already in --out (only a synthmed cohort is ever replaced)"),
) -> None:
    """Generate a synthetic cohort from a trained model."""
    from synthmed.generate import sample_cohort
    from synthmed.models import load
    from synthmed.progress import console

    from synthmed.io.folders import prepare_output

    prepare_output(check_out_folder(out), "cohort", overwrite)
    check_int(n, "--n", 1)
    check_int(batch_size, "--batch-size", 1)
    check_seed(seed)
    check_float(sex_ratio, "--sex-ratio", 0.0, 1.0)
    label_rates, age_range = parse_label_rates(labels), parse_age_range(age)
    model = load(run)
    result = sample_cohort(model, n, out, label_rates=label_rates,
                           age_range=age_range, sex_ratio=sex_ratio, seed=seed,
                           steps=steps, sampler=sampler, guidance_scale=guidance,
                           batch_size=batch_size, overwrite=overwrite, formats=formats)
    used = result.sampling
    console.print(f"wrote {n} synthetic images ({used['sampler']}, {used['steps']} steps, guidance "
                  f"{used['guidance_scale']:g}) -> {result.out}")
