"""`synthmed phantoms`: write built-in virtual patients as DICOM (a thin layer over the API)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from synthmed.cli.app import app
from synthmed.cli.options import check_float, check_int, check_out_folder, check_seed
from synthmed.errors import ConfigError


def _parse_range(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split("-")]
    except ValueError:
        raise ConfigError(f"--studies: expected MIN-MAX such as 1-3, got {text!r}") from None
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) != 2:
        raise ConfigError(f"--studies: expected MIN-MAX such as 1-3, got {text!r}")
    return parts[0], parts[1]


@app.command("phantoms")
def phantoms(
    out: Path = typer.Argument(..., help="New or empty folder to write the DICOM files into."),
    patients: int = typer.Option(..., "--patients", "-n", help="Number of virtual patients."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same files (byte for byte)."),
    kind: str = typer.Option("cxr", "--kind", help="cxr (chest radiographs) or ct3d (torso CT)."),
    studies: str = typer.Option("1-3", "--studies", help="Studies per patient, MIN-MAX."),
    size: int = typer.Option(None, "--size", help="Image size in px (cxr 256, ct3d 128)."),
    slices: int = typer.Option(None, "--slices", help="ct3d: axial slices per series (48)."),
    findings_rate: float = typer.Option(0.3, "--findings-rate",
                                        help="Share of patients with a finding."),
    workers: int = typer.Option(None, "--workers", help="Processes (default: CPU count)."),
) -> None:
    """Write virtual patients as real DICOM files, with invented identities in the headers."""
    from synthmed.phantoms import make_phantoms  # imported here so `synthmed --help` stays fast

    check_out_folder(out, "OUT")
    for value, option in ((patients, "--patients"), (size, "--size"), (slices, "--slices"),
                          (workers, "--workers")):
        check_int(value, option, 1)
    check_seed(seed)
    check_float(findings_rate, "--findings-rate", 0.0, 1.0)
    start = time.perf_counter()
    summary = make_phantoms(out, patients, seed=seed, kind=kind,  # type: ignore[arg-type]
                            studies_per_patient=_parse_range(studies), size=size,
                            findings_rate=findings_rate, workers=workers, slices=slices)
    seconds = time.perf_counter() - start
    findings = ", ".join(f"{k} {v}" for k, v in summary.findings.items())
    Console().print(
        f"wrote {summary.patients} patients, {summary.studies} studies, {summary.files} DICOM "
        f"files ({summary.kind}) to {summary.out} in {seconds:.1f} s\n"
        f"studies with findings: {findings}\nmetadata: {summary.metadata_csv}")
