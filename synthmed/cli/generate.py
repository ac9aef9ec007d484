"""`synthmed generate RUN --spec SPEC --out COHORT [--shard k/n]` and `synthmed generate --merge
--out COHORT`: a cohort of virtual patients from a spec, sharded and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthmed.cli.app import app
from synthmed.cli.options import check_out_folder
from synthmed.errors import InputError


def _pick_local_gpu() -> None:
    """Under torchrun each rank samples on its own GPU (LOCAL_RANK), not all on the first."""
    import os

    local = os.environ.get("LOCAL_RANK")
    if local is None:
        return
    import torch

    if torch.cuda.is_available() and local.isdigit():
        torch.cuda.set_device(int(local) % torch.cuda.device_count())


@app.command("generate")
def generate_cmd(
    run: Optional[Path] = typer.Argument(None, help="run folder written by `synthmed train` (not with --merge)"),
    spec: Optional[str] = typer.Option(None, "--spec", help="cohort spec: a YAML file or a shipped name (synthmed configs)"),
    out: Path = typer.Option(..., "--out", "-o", help="cohort folder to write"),
    shard: Optional[str] = typer.Option(None, "--shard", help="k/n: this process makes shard k (from 0) of n; default: torchrun's RANK/WORLD_SIZE, else 0/1"),
    merge: bool = typer.Option(False, "--merge", help="merge the finished shards in --out into one cohort"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the cohort in --out (or discard an unfinished generation of another spec)"),
) -> None:
    """Generate a cohort of virtual patients (several studies each) from a cohort spec.

    A re-run resumes: patients already written whose checksums verify are skipped. With
    several shards, run each (`--shard k/n`, or under torchrun), then `--merge`."""
    from synthmed.generate.runner import Shard, generate, merge as merge_shards
    from synthmed.progress import console

    check_out_folder(out)
    if merge:
        if run is not None or spec is not None or shard is not None:
            raise InputError("--merge takes only --out (and --overwrite): it merges what the shards wrote")
        path = merge_shards(out, overwrite=overwrite)
        console.print(f"merged -> {path}")
        return
    if run is None or spec is None:
        raise InputError("generate needs RUN and --spec (or --merge --out COHORT)")
    from synthmed.generate.spec import load_spec
    from synthmed.models import load

    cohort_spec = load_spec(spec)
    the_shard = Shard.parse(shard) if shard is not None else Shard.from_env()
    _pick_local_gpu()
    result = generate(load(run), cohort_spec, out, shard=the_shard, overwrite=overwrite)
    rate = f", {result.patients_per_s:.2f} patients/s" if result.generated else ""
    what = (f"{len(result.generated)} patients generated, {len(result.skipped)} already finished"
            f"{rate}")
    if result.merged:
        console.print(f"{what} -> {result.out}")
    else:
        console.print(f"{what} (shard {the_shard.index}/{the_shard.count}); when every shard has "
                      f"finished: synthmed generate --merge --out {out}")
