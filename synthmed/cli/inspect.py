"""`synthmed inspect DIR`: counts per split, label, age and sex, plus a contact sheet PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from synthmed.cli.app import app
from synthmed.cli.options import check_seed
from synthmed.errors import InputError


@app.command("inspect")
def inspect_command(
    dataset: Path = typer.Argument(..., help="dataset folder written by `synthmed ingest`"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="contact sheet PNG (default: DIR/contact_sheet.png)"),
    seed: int = typer.Option(0, help="which random images the contact sheet shows"),
) -> None:
    """Summarise a dataset and draw a contact sheet of random images per split."""
    from synthmed.data.inspect import inspect

    check_seed(seed)
    if out is not None and out.is_dir():
        raise InputError(f"{out}: --out names a folder; it is the contact sheet's PNG file name")
    result = inspect(dataset, out, seed=seed)
    s = result.record
    console = Console()
    table = Table(title=f"{dataset}: {s['patients']} patients, {s['images']} images, "
                        f"{s['spatial_dims']}D {'x'.join(map(str, s['shape']))}", title_justify="left")
    for col in ("split", "patients", "images", "age min/median/max", "sex"):
        table.add_column(col)
    for split, v in s["splits"].items():
        age = v["age"]
        age_s = f"{age['min']:g} / {age['median']:g} / {age['max']:g}" if age else "-"
        sex_s = ", ".join(f"{k} {n}" for k, n in v["sex"].items())
        table.add_row(split, str(v["patients"]), str(v["images"]), age_s, sex_s)
    console.print(table)
    labels = sorted({lab for v in s["splits"].values() for lab in v["labels"]})
    if labels:
        lt = Table(title="images per label", title_justify="left")
        lt.add_column("label")
        splits = list(s["splits"])
        for split in splits:
            lt.add_column(split, justify="right")
        for lab in labels:
            lt.add_row(lab, *(str(s["splits"][sp]["labels"].get(lab, 0)) for sp in splits))
        console.print(lt)
    console.print(f"contact sheet: {result.out}", markup=False, highlight=False, soft_wrap=True)
