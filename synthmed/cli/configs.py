"""`synthmed configs [NAME]`: the configs that ship with synthmed, listed or printed."""

from __future__ import annotations

from typing import Optional

import typer

from synthmed.cli.app import app


@app.command("configs")
def configs_command(
    name: Optional[str] = typer.Argument(None, help="a config's name (e.g. demo, ingest-cxr-64, audit-public); prints its YAML"),
) -> None:
    """List the shipped configs (name, kind, what it is for), or print one by name.

    Any of them can be given by name where a config or profile is asked for
    (`synthmed train --config demo`, `synthmed audit --profile public`), or copied and edited.
    """
    from synthmed.config import find_shipped_config, shipped_configs

    if name is not None:
        typer.echo(find_shipped_config(name).text(), nl=False)
        return
    found = shipped_configs()
    width = max(len(c.name) for c in found)
    for c in found:
        typer.echo(f"{c.name:<{width}}  {c.kind:<6}  {c.description}")
