"""`synthmed demo`: the whole pipeline on built-in virtual patients (a thin layer over the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from synthmed.cli.app import app
from synthmed.cli.options import check_int, check_out_folder, check_seed
from synthmed.errors import InputError


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for every demo output."),
    patients: Optional[int] = typer.Option(None, "--patients", help="Virtual patients to make (default 1560, enough for a conclusive audit; 80 with --quick)."),
    seed: int = typer.Option(0, "--seed"),
    fresh: bool = typer.Option(True, "--fresh/--keep",
                               help="Replace a previous demo in --out (only a demo folder exactly as synthmed wrote it; --keep refuses instead)."),
    train: bool = typer.Option(True, "--train/--no-train",
                               help="Also train a tiny generator, sample a cohort and audit it."),
    quick: bool = typer.Option(False, "--quick",
                               help="Smallest settings that still run every stage (checks an install in under a minute; the model is not meant to be good)."),
) -> None:
    """Make virtual patients, ingest them, train, generate a cohort and audit it, on a laptop CPU."""
    from synthmed.demo import run_demo

    from synthmed.io import folders
    from synthmed.io.folders import prepare_output

    check_int(patients, "--patients", 1)
    check_seed(seed)
    # Only an empty folder, a new one, or a previous demo exactly as synthmed wrote it: the demo
    # never deletes what it did not write.
    prepare_output(check_out_folder(out), "demo", overwrite=fresh)
    console = Console()

    def show(name: str, value: Any) -> None:
        # the stages run in the demo's staging folder; name the paths they will have
        text = folders.final_text(_describe(name, value))
        console.print(f"[bold green]✓[/] {name}: {text}")

    run_demo(out, patients=patients, seed=seed, train=train, quick=quick, on_stage=show,
             overwrite=fresh)
    console.print(f"\nAll outputs are in {out}/ (open {out}/audit/report.html for the privacy audit)"
                  if train else f"\nAll outputs are in {out}/")


def _describe(name: str, value: Any) -> str:
    if name == "phantoms":
        return f"{value.patients} virtual patients, {value.files} DICOM files (fake identities)"
    if name == "ingest":
        splits = ", ".join(f"{k} {v.get('patients', 0)} patients" for k, v in value.splits.items())
        return (f"{value.images} images of {value.patients} patients kept, {value.refused} files "
                f"refused; split by patient: {splits}")
    if name == "inspect":
        return f"summary and contact sheet at {value['contact_sheet']}"
    if name == "train":
        return f"model in {value}"
    if name == "generate":
        return f"synthetic cohort in {value}"
    if name == "evaluate":
        from synthmed.evaluate.runner import TRAIN_INSTRUMENT, headline_fidelity

        key, synthetic, floor = headline_fidelity(value)
        text = f"{key} to real train {synthetic:.3g} (real floor {floor:.3g})"
        if "by_guidance" in value:
            g, entry = next(iter(value["by_guidance"].items()))
            a = entry[TRAIN_INSTRUMENT]["assignment"]["with_no_finding"]
            text += (f"; conditioned finding named in {a['accuracy']:.0%} of samples (chance "
                     f"{a['chance']:.0%}, guidance {g})")
        return text
    if name == "audit":
        v = value.verdict
        failed = ", ".join(r.rule for r in v.failed_rules())
        text = f"verdict {v.verdict.upper()} (tier {v.tier})" + (f"; failed rules: {failed}" if failed else "")
        if v.verdict == "inconclusive":
            text += (f"; too few patients to rule out a leak ({len(v.inconclusive_rules())} rules"
                     + (f", about {v.patients_needed} holdout patients needed)" if v.patients_needed else ")"))
        return text
    return str(value)
