"""`synthmed release COHORT --audit A --dataset D --model RUN --tier public --out BUNDLE`.

Exit codes: 0 when the bundle was written (with a warning when `--override` accepted reasons);
2 when the release is refused: every reason is printed, one line each, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from synthmed.cli.app import app
from synthmed.cli.options import check_out_folder


@app.command("release")
def release_command(
    cohort: Path = typer.Argument(..., help="the synthetic cohort folder to release"),
    audit: Path = typer.Option(..., "--audit", help="the audit folder of this cohort (synthmed audit --out)"),
    dataset: Path = typer.Option(..., "--dataset", help="the dataset the model was trained on and the audit used"),
    model: Path = typer.Option(..., "--model", help="the training run that generated the cohort (its model card goes into the bundle)"),
    out: Path = typer.Option(..., "--out", help="folder for the release bundle"),
    tier: str = typer.Option("public", "--tier", help="release tier: public or controlled (the audit must have passed at it)"),
    formats: Optional[List[str]] = typer.Option(None, "--formats", help="image formats to include (dicom, nifti, png, npy; repeat or comma-separate; default: the dicom / nifti / png the cohort has, else npy)"),
    source: Optional[List[Path]] = typer.Option(None, "--source", help="a folder the dataset was ingested from (repeat): the bundle is scanned for its identifiers"),
    key: Optional[Path] = typer.Option(None, "--key", help="the de-identification key (default: where the dataset's ingest report says it is)"),
    override: Optional[str] = typer.Option(None, "--override", help="release despite audit-related refusals, giving the reason (written into the bundle)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the bundle already in --out"),
) -> None:
    """Assemble a release bundle: only for a cohort whose audit passed and matches, after a scan for identifiers."""
    from synthmed.progress import console
    from synthmed.release import release

    check_out_folder(out)
    fmts = [f.strip() for item in (formats or []) for f in item.split(",") if f.strip()] or None
    result = release(cohort, audit=audit, dataset=dataset, model=model, out=out, tier=tier,
                     formats=fmts, sources=source, key=key, override=override, overwrite=overwrite)
    for w in result.warnings:
        console.print(f"[bold red]warning:[/] {w}", highlight=False, soft_wrap=True)
    s = result.record["scan"]
    console.print(f"released {out} at the '{tier}' tier: {s['files']} files scanned "
                  f"({s['bytes']} bytes, {sum(s['identifier_counts'].values())} identifiers searched), "
                  "none found", markup=False, highlight=False, soft_wrap=True)
