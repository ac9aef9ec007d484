"""`synthmed evaluate`: how good a cohort is (`--synthetic COHORT`), or a generator (`RUN`).

    synthmed evaluate --dataset DATA --synthetic COHORT --out EVAL   fidelity, diversity and
        condition agreement of a cohort folder, each beside its real floor (evaluate_cohort)
    synthmed evaluate RUN --dataset DATA --out EVAL                  conditioning and fidelity of
        a trained generator, sampled here (evaluate_generator)
    synthmed evaluate RUN --dataset DATA --sweep-steps 10,20,50 --out EVAL   fidelity against
        sampling steps and wall time (evaluate_sweep)
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from synthmed.cli.app import app
from synthmed.cli.options import check_int, check_out_folder, check_seed
from synthmed.errors import InputError

_GENERATOR_ONLY = ("--n", "--labels", "--top", "--guidance", "--steps", "--sampler", "--batch-size",
                   "--real-grid")


@app.command("evaluate")
def evaluate_cmd(
    run: Optional[Path] = typer.Argument(None, help="run folder written by `synthmed train` (or give --synthetic)"),
    dataset: Path = typer.Option(..., "--dataset", help="the ingested dataset the model was trained on"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for evaluation.json (and report.html / samples.png)"),
    synthetic: Optional[Path] = typer.Option(None, "--synthetic", help="a cohort folder written by `synthmed generate` / `synthmed sample`: evaluate it instead of a RUN"),
    config: Optional[str] = typer.Option(None, "--config", help="cohort evaluation config: a YAML path or a shipped name (evaluate, evaluate-quick); default evaluate"),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="local encoder weights (an audit's encoder/ folder) instead of training the audit's encoder here"),
    n: Optional[int] = typer.Option(None, "--n", help="samples per condition (RUN; default 100)"),
    labels: Optional[str] = typer.Option(None, "--labels", help='findings to condition on, e.g. "Effusion,Mass" (RUN; default: the --top most frequent)'),
    top: Optional[int] = typer.Option(None, "--top", help="how many of the most frequent findings to evaluate (RUN; default 4)"),
    guidance: Optional[List[float]] = typer.Option(None, "--guidance", help="guidance scale; repeat to compare several (RUN; default: the model's)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="sampler steps (RUN; default: the model's)"),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="dpm++ | ddim | ddpm (RUN; default: the model's)"),
    seed: int = typer.Option(0, "--seed"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="sampling batch (RUN; default 64)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the evaluation already in --out"),
    allow_other_dataset: bool = typer.Option(False, "--allow-other-dataset", help="evaluate against a dataset the model was not trained on (recorded in evaluation.json)"),
    real_grid: bool = typer.Option(False, "--real-grid", help="RUN: also write real.png, a grid of REAL images for comparison (shows patients: keep it inside)"),
    sweep: Optional[str] = typer.Option(None, "--sweep-steps", help='RUN: sample at each step count, e.g. "10,20,50,1000", and read fidelity against steps and wall time (--n images each)'),
) -> None:
    """Measure a synthetic cohort (--synthetic) or a trained generator (RUN) against real data."""
    from synthmed.io.folders import prepare_output
    from synthmed.progress import console

    if (run is None) == (synthetic is None):
        raise InputError("give exactly one of RUN or --synthetic COHORT (a run folder to sample, or "
                         "a cohort folder to evaluate)")
    prepare_output(check_out_folder(out), "evaluation", overwrite)
    check_seed(seed)
    if synthetic is not None:
        given = [opt for opt, v in zip(_GENERATOR_ONLY + ("--sweep-steps",),
                                       (n, labels, top, guidance, steps, sampler, batch_size,
                                        real_grid or None, sweep)) if v]
        if given:
            raise InputError(f"{', '.join(given)}: only for RUN (sampling a generator); a cohort is "
                             "read as it is (its settings are in --config)")
        from synthmed.evaluate.cohort import evaluate_cohort

        res = evaluate_cohort(dataset, synthetic, out, config=config, encoder=encoder, seed=seed,
                              overwrite=overwrite, allow_other_dataset=allow_other_dataset)
        typer.echo(res.summary())
        typer.echo(f"wrote {out / 'evaluation.json'} and {out / 'report.html'}"
                   + (" (INTERNAL: it shows real images)" if "INTERNAL" in
                      (out / "report.html").read_text(encoding="utf-8")[:2000] else ""))
        return
    if config is not None:
        raise InputError("--config is for --synthetic (a cohort evaluation)")
    n, top, batch_size = (100 if n is None else n), (4 if top is None else top), (64 if batch_size is None else batch_size)
    for value, option in ((n, "--n"), (top, "--top"), (batch_size, "--batch-size")):
        check_int(value, option, 1)
    from synthmed.data.dataset import Dataset
    from synthmed.evaluate.runner import evaluate_generator
    from synthmed.models import load

    if sweep is not None:
        counts = parse_steps(sweep)
        from synthmed.evaluate.cohort import evaluate_sweep

        res = evaluate_sweep(load(run), Dataset.open(dataset), out, counts, n=n, seed=seed, encoder=encoder,
                             sampler=sampler, batch_size=batch_size, overwrite=overwrite,
                             allow_other_dataset=allow_other_dataset)
        typer.echo(res.summary())
        typer.echo(f"wrote {out / 'evaluation.json'}, {out / 'sweep.png'} and {out / 'report.html'}")
        return
    if encoder is not None:
        raise InputError("--encoder is for --synthetic or --sweep-steps")
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


def parse_steps(text: str) -> list[int]:
    """'10,20,50,1000' -> [10, 20, 50, 1000]; anything else is one readable line."""
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts):
        raise InputError(f"--sweep-steps: {text!r} is not a list of whole step counts >= 1 "
                         "(e.g. 10,20,50,1000)")
    if len(set(counts)) != len(counts):
        raise InputError(f"--sweep-steps: step counts repeat in {text!r}")
    return counts


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
