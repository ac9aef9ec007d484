"""`synthmed audit`: privacy audit of a synthetic cohort against the dataset it was trained on.

Exit codes: 0 when the audit ran (whatever the verdict: a failed audit is a result, not an
error, and scripts should read audit.json); 3 with `--fail-on-fail` when the verdict is not
`pass` (`fail` or `inconclusive`: a gate must not open on an audit too small to be evidence);
2 for inputs that cannot be audited (one line on stderr).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from synthmed.cli.app import app
from synthmed.cli.options import check_out_folder, check_seed


@app.command("audit")
def audit_command(
    dataset: Path = typer.Option(..., "--dataset", help="ingested dataset folder (train = members, holdout = non-members)"),
    synthetic: Optional[Path] = typer.Option(None, "--synthetic", help="synthetic cohort folder (or a plain folder of images); required unless --canaries"),
    out: Path = typer.Option(..., "--out", help="folder for audit.json and report.html"),
    profile: Optional[str] = typer.Option(None, "--profile", help="audit profile: a shipped name (public, controlled) or a YAML path (default: public)"),
    seed: int = typer.Option(0, "--seed", help="seed for the encoder and the bootstrap"),
    filter_: bool = typer.Option(False, "--filter", help="also write a copy of the cohort without flagged images and re-audit it"),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="local encoder weights (embedder.json + .safetensors) instead of training one"),
    identity_network: Optional[Path] = typer.Option(None, "--identity-network", help="local re-identification network (reid.json + reid.safetensors, from `synthmed identity train`) for the identity attack, instead of training one on the train split"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the audit already in --out"),
    model: Optional[Path] = typer.Option(None, "--model", help="the generator's run folder: also run the white-box attacks (profile whitebox:), which query its denoiser"),
    allow_other_dataset: bool = typer.Option(False, "--allow-other-dataset", help="audit a cohort whose model was trained on another dataset (recorded in audit.json)"),
    fail_on_fail: bool = typer.Option(False, "--fail-on-fail", help="exit with code 3 when the verdict is not 'pass' (fail or inconclusive)"),
    canaries: Optional[int] = typer.Option(None, "--canaries", help="canary audit instead of a cohort's: train --model's recorded config again with K canaries planted (copied 1, 10 and 100 times) and measure how well each attack finds them; writes canaries.json / .md / .png (as `synthmed canaries`)"),
) -> None:
    """Audit a synthetic cohort for membership leakage and copies; write audit.json and report.html."""
    from synthmed.audit import run_audit
    from synthmed.config import resolve_config_path
    from synthmed.errors import InputError

    from synthmed.io.folders import prepare_output

    if canaries is not None:
        _canary_audit(dataset, out, model, canaries, profile, seed, overwrite, synthetic=synthetic,
                      cohort_only={"--filter": filter_, "--encoder": encoder,
                                   "--identity-network": identity_network,
                                   "--allow-other-dataset": allow_other_dataset,
                                   "--fail-on-fail": fail_on_fail})
        return
    if synthetic is None:
        raise InputError("--synthetic: required: the cohort to audit (or --model RUN --canaries K "
                         "for a canary audit of RUN's training)")

    prepare_output(check_out_folder(out), "audit", overwrite)
    check_seed(seed)
    result = run_audit(dataset, synthetic, resolve_config_path(profile, "audit"), out, seed=seed,
                       filter=filter_, encoder=encoder, identity_network=identity_network, overwrite=overwrite,
                       allow_other_dataset=allow_other_dataset, model=model)
    console = Console()
    print_result(console, result)
    if result.filtered is not None or "filter" in result.audit:
        f = result.audit["filter"]
        console.print(f"filtered cohort ({f['n_removed']} images removed, {f['n_kept']} kept): "
                      f"[bold]{f['verdict']}[/bold]  -> {out / 'filtered'}")
    console.print(f"wrote {out / 'audit.json'} and {out / 'report.html'}")
    if fail_on_fail and not result.passed:
        raise typer.Exit(3)


def _canary_audit(dataset: Path, out: Path, model: Optional[Path], k: int, profile: Optional[str],
                  seed: int, overwrite: bool, *, synthetic: Optional[Path], cohort_only: dict) -> None:
    from synthmed.api import canaries as run_canaries
    from synthmed.cli.canaries import print_canaries
    from synthmed.cli.options import check_int
    from synthmed.errors import InputError

    # a canary audit trains and attacks its own model: nothing of a cohort's audit applies
    given = [flag for flag, v in cohort_only.items() if v] + (["--synthetic"] if synthetic else [])
    if given:
        raise InputError(f"--canaries: {', '.join(given)} belong to the audit of a cohort; a canary "
                         "audit trains and attacks its own model (drop them, or drop --canaries)")
    if model is None:
        raise InputError("--canaries: needs --model RUN, whose recorded training config is trained "
                         "again with the canaries (or use `synthmed canaries --config C`)")
    check_out_folder(out)
    check_int(k, "--canaries", 1)
    check_seed(seed)
    rec = run_canaries(dataset, out, model=model, k=k, profile=profile, seed=seed, overwrite=overwrite)
    print_canaries(rec)


def print_result(console: Console, result) -> None:
    v = result.verdict
    colour = {"pass": "green", "inconclusive": "yellow"}.get(v.verdict, "red")
    table = Table(title=f"privacy audit: [bold {colour}]{v.verdict.upper()}[/] (tier {v.tier})", show_lines=False)
    table.add_column("rule")
    table.add_column("measured", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("result")
    for r in v.rules:
        fmt = (lambda x: f"{x:.3g}" if isinstance(x, float) else str(x))
        word = {"pass": "[green]pass[/]", "inconclusive": "[yellow]inconclusive[/]"}.get(r.outcome, "[red]FAIL[/]")
        table.add_row(r.rule, fmt(r.measured), fmt(r.threshold), word)
    console.print(table)
    for r in v.failed_rules():
        console.print(f"[red]-[/] {r.explanation}", markup=True, highlight=False)
    if v.verdict == "inconclusive":
        from synthmed.audit.report import inconclusive_text

        console.print(f"[yellow]inconclusive:[/] {inconclusive_text(result.audit)}", highlight=False)
