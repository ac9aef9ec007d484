"""`synthmed evaluate RUN --dataset DATA --out EVAL`: how faithful and how controllable a generator is."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from synthmed.cli.app import app
from synthmed.cli.options import check_int, check_out_folder, check_seed


@app.command("evaluate")
def evaluate_cmd(
    run: Path = typer.Argument(..., help="run folder written by `synthmed train`"),
    dataset: Path = typer.Option(..., "--dataset", help="the ingested dataset the model was trained on"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for evaluation.json and samples.png"),
    n: int = typer.Option(100, "--n", help="samples per condition"),
    labels: Optional[str] = typer.Option(None, "--labels", help='findings to condition on, e.g. "Effusion,Mass" (default: the --top most frequent)'),
    top: int = typer.Option(4, "--top", help="how many of the most frequent findings to evaluate"),
    guidance: Optional[List[float]] = typer.Option(None, "--guidance", help="guidance scale; repeat to compare several (default: the model's)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="sampler steps (default: the model's)"),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="dpm++ | ddim | ddpm (default: the model's)"),
    seed: int = typer.Option(0, "--seed"),
    batch_size: int = typer.Option(64, "--batch-size"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the evaluation already in --out"),
    allow_other_dataset: bool = typer.Option(False, "--allow-other-dataset", help="evaluate against a dataset the model was not trained on (recorded in evaluation.json)"),
    real_grid: bool = typer.Option(False, "--real-grid", help="also write real.png, a grid of REAL images for comparison (shows patients: keep it inside)"),
) -> None:
    """Sample per condition and measure: label rate vs chance, fidelity next to the real floor."""
    from synthmed.data.dataset import Dataset
    from synthmed.evaluate.runner import evaluate_generator
    from synthmed.models import load
    from synthmed.progress import console

    from synthmed.io.folders import prepare_output

    prepare_output(check_out_folder(out), "evaluation", overwrite)
    for value, option in ((n, "--n"), (top, "--top"), (batch_size, "--batch-size")):
        check_int(value, option, 1)
    check_seed(seed)
    model = load(run)
    ds = Dataset.open(dataset)
    wanted = [x.strip() for x in labels.split(",") if x.strip()] if labels else None
    record = evaluate_generator(model, ds, out, labels=wanted, top=top, n=n, guidance=guidance,
                                steps=steps, sampler=sampler, seed=seed, batch_size=batch_size,
                                device=str(model.device), real_grid=real_grid,
                                overwrite=overwrite, allow_other_dataset=allow_other_dataset)
    print_summary(console, record)
    console.print(f"wrote {out / 'evaluation.json'} and {out / 'samples.png'}"
                  + (f" and {out / 'real.png'}" if real_grid else ""))


def print_summary(console, record: dict) -> None:
    from synthmed.evaluate.runner import TRAIN_INSTRUMENT, headline_fidelity

    key, synthetic, floor = headline_fidelity(record)
    fid = record["fidelity"]
    console.print(f"fidelity (unconditional, n = {fid['n']}): {key} {synthetic:.4g}"
                  f" (real holdout floor {floor:.4g}, noise {fid['noise_vs_train'][key]:.4g})")
    if "by_guidance" not in record:
        console.print(f"conditioning {record.get('conditioning', 'not evaluated')}")
        return
    for g, entry in record["by_guidance"].items():
        instruments = sorted((name for name in entry if name != "fidelity_by_condition"),
                             key=lambda name: name != TRAIN_INSTRUMENT)
        table = Table(title=f"guidance {g}: share of samples flagged for their condition (chance)")
        table.add_column("conditioned on")
        for name in instruments:
            table.add_column(name, justify="right")
        for lab in record["labels"]:
            cells = []
            for name in instruments:
                r = entry[name]["label_rates"][lab]
                text = f"{r['rate']:.2f} ({r['chance_rate']:.2f})"
                cells.append(f"[green]{text}[/]" if r["above_chance"] else text)
            table.add_row(lab, *cells)
        cells = []
        for name in instruments:
            a = entry[name]["assignment"]["with_no_finding"]
            text = f"{a['accuracy']:.2f} ({a['chance']:.2f}) p {a['p_value']:.2g}"
            cells.append(f"[green]{text}[/]" if a["p_value"] < 0.05 else text)
        table.add_row("assigned among all", *cells)
        console.print(table)
