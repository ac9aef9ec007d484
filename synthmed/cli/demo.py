"""`synthmed demo`: the whole pipeline on built-in virtual patients (a thin layer over the API)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from synthmed.cli.app import app
from synthmed.cli.options import FLAGS, check_int, check_out_folder, check_seed


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for every demo output."),
    patients: Optional[int] = typer.Option(None, "--patients", help="Virtual patients to make (default 1560, enough for a conclusive audit; 80 with --quick)."),
    seed: int = typer.Option(0, "--seed"),
    fresh: bool = typer.Option(True, "--fresh/--keep",
                               help="Replace a previous demo in --out (only a demo folder exactly as synthmed wrote it; --keep refuses instead)."),
    train: bool = typer.Option(True, "--train/--no-train",
                               help="Also train a tiny generator, generate a cohort, audit, evaluate and release it."),
    quick: bool = typer.Option(False, "--quick",
                               help="Smallest settings that still run every stage (checks an install in about a minute; the model is not meant to be good and its release is refused)."),
) -> None:
    """Make virtual patients, ingest them, train, generate a cohort, audit, evaluate and release it, on a laptop CPU.

    Ends with DIR/index.html, one page linking every report. Each stage prints the `synthmed`
    command that re-runs it alone on the demo's folders."""
    from synthmed.demo import StageRecord, run_demo
    from synthmed.io import folders
    from synthmed.io.folders import prepare_output

    check_int(patients, "--patients", 1)
    check_seed(seed)
    # Only an empty folder, a new one, or a previous demo exactly as synthmed wrote it: the demo
    # never deletes what it did not write.
    prepare_output(check_out_folder(out), "demo", overwrite=fresh)
    console = Console()

    def start(name: str, command: str) -> None:
        console.print(f"[bold]→ {name}[/]  [dim](alone: {command})[/]", highlight=False,
                      soft_wrap=True)

    def show(rec: StageRecord) -> None:
        # the stages run in the demo's staging folder; name the paths they will have
        console.print(f"[bold green]✓[/] {rec.name} ({rec.seconds:.1f} s): "
                      f"{folders.final_text(rec.summary)}", highlight=False, soft_wrap=True)

    t0 = time.perf_counter()
    result = run_demo(out, patients=patients, seed=seed, train=train, quick=quick, on_start=start,
                      on_stage=show, overwrite=fresh, flags=FLAGS)
    console.print(f"\n[bold]Summary[/] ({time.perf_counter() - t0:.0f} s)", highlight=False)
    for rec in result.records.values():
        if rec.name != "index":
            console.print(f"  {rec.name}: {folders.final_text(rec.summary)}", highlight=False,
                          soft_wrap=True)
    if result.refusal is not None:
        console.print("[bold red]The release was refused[/] (this is the demo's answer, not an "
                      "error):", highlight=False)
        # as `synthmed release` would print them: the arguments named by their flags
        for reason in result.refusal.reasons_for(FLAGS):
            console.print(f"  - {reason}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"\nOpen {result.index} (INTERNAL: it links pages that show the virtual "
                  "training patients)", highlight=False, soft_wrap=True)
