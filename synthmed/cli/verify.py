"""`synthmed verify PATH`: is this a whole synthmed folder, unchanged since it was written?

Checks the folder marker, every file's sha256 and, for datasets and cohorts, the content
(manifest consistency, values, shapes) as opening them does; says what the folder is. Exit 0 when
it verifies, 2 (one line) when not. `--restamp --reason TEXT` deliberately accepts a checked hand
edit: the marker is rewritten and the change (old and new fingerprint, time, reason) recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthmed.cli.app import app


@app.command("verify")
def verify_command(
    path: Path = typer.Argument(..., help="any folder synthmed wrote (dataset, run, cohort, audit, evaluation, demo, bundle)"),
    restamp: bool = typer.Option(False, "--restamp", help="accept the folder as it is now and record the change in its marker"),
    reason: Optional[str] = typer.Option(None, "--reason", help="why the folder changed (required with --restamp)"),
) -> None:
    """Check a synthmed folder's marker, fingerprint and consistency, and say what it is."""
    from synthmed.io import folders
    from synthmed.io.verify import verify_folder
    from synthmed.progress import console

    if restamp:
        info, old = folders.restamp(path, reason or "")
        console.print(f"restamped {path}: {old or '(no marker)'} -> {info.fingerprint}",
                      markup=False, highlight=False, soft_wrap=True)
    for line in verify_folder(path):
        print(line)
