"""`synthmed ingest SRC... --out DIR`: medical images in, a de-identified Dataset folder out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from synthmed.cli.app import app
from synthmed.cli.options import check_int, check_out_folder


@app.command("ingest")
def ingest_command(
    sources: list[Path] = typer.Argument(..., help="files or folders of DICOM, NIfTI, PNG/JPEG or .npz"),
    out: Path = typer.Option(..., "--out", "-o", help="dataset folder to write"),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="ingest config: a shipped name (`synthmed configs`, e.g. cxr-64) or a YAML path"),
    metadata: Optional[Path] = typer.Option(None, "--metadata", "-m", help="CSV with patient ID, labels, age, sex per file (NIH or file,patient_id,labels,age,sex); given but unusable is an error"),
    key: Optional[Path] = typer.Option(None, "--key", help="de-identification key file (default: created once in ~/.config/synthmed/deid.key)"),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="reader processes (default: min(2, CPUs))"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the dataset already in --out (only a synthmed dataset is ever replaced)"),
    show_paths: bool = typer.Option(False, "--show-paths", help="name refused files by their real path on the console (paths may carry patient identifiers; they are never written to files)"),
) -> None:
    """Read, de-identify, normalise and split images by patient into a synthmed dataset."""
    from synthmed.config import load_config, resolve_config_path
    from synthmed.data.ingest import ingest
    from synthmed.data.ingest_config import IngestConfig

    from synthmed.io.folders import prepare_output

    prepare_output(check_out_folder(out), "dataset", overwrite)
    check_int(workers, "--workers", 1)
    cfg = load_config(resolve_config_path(config, "ingest"), IngestConfig)
    result = ingest(sources, out, cfg, metadata_csv=metadata, key_path=key, workers=workers,
                    show_paths=show_paths, overwrite=overwrite)
    table = Table(title=f"ingested into {result.out}", title_justify="left")
    for col in ("split", "patients", "images"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, counts in result.splits.items():
        if counts["images"]:
            table.add_row(split, str(counts["patients"]), str(counts["images"]))
    console = Console()
    console.print(table)
    console.print(f"files: {result.read} read, {result.kept} kept, {result.refused} refused, "
                  f"{result.skipped} skipped; details in {result.out / 'ingest_report.json'}",
                  markup=False, highlight=False, soft_wrap=True)
    if result.refused and not show_paths:
        console.print("refused files are named by keyed reference (F-...); rerun with --show-paths to "
                      "see their paths on this console", markup=False, highlight=False, soft_wrap=True)
