"""`synthmed identity train`: train the re-identification network the audit's identity attack uses.

    synthmed identity train --dataset D --out W [--split train] [--seed S] [--steps N]

Writes W (a synthmed `identity` folder: reid.json + reid.safetensors + marker) that
`synthmed audit ... --identity-network W` loads instead of training a network itself. The
network learns from same-patient pairs of the chosen split only; a share of those patients is kept
out of training to measure the verification AUC, which is printed and recorded in reid.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthmed.cli.app import app
from synthmed.cli.options import check_int, check_out_folder, check_seed

identity_app = typer.Typer(help="The re-identification network of the audit's identity attack.",
                           no_args_is_help=True)
app.add_typer(identity_app, name="identity")


@identity_app.command("train")
def identity_train(
    dataset: Path = typer.Option(..., "--dataset", help="ingested dataset folder"),
    out: Path = typer.Option(..., "--out", help="folder for the network (reid.json + reid.safetensors)"),
    split: str = typer.Option("train", "--split", help="the split whose patients train it: train, holdout or reference"),
    seed: int = typer.Option(0, "--seed", help="seed for initialisation, batches and augmentations"),
    steps: Optional[int] = typer.Option(None, "--steps", help="training steps (default: the identity settings' steps)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the network already in --out"),
) -> None:
    """Train the re-identification network on same-patient pairs of one split of a dataset."""
    from synthmed.audit.reid import train_identity_folder
    from synthmed.errors import ConfigError
    from synthmed.io.folders import prepare_output
    from synthmed.progress import console

    prepare_output(check_out_folder(out), "identity", overwrite)
    check_seed(seed)
    check_int(steps, "--steps", 1)
    if split not in ("train", "holdout", "reference"):
        raise ConfigError(f"--split: must be train, holdout or reference (got {split!r})")
    net = train_identity_folder(dataset, out, split=split, seed=seed, steps=steps, overwrite=overwrite)
    v = net.verification
    if v is not None and v.estimable:
        what = (f"verification AUC {v.auc:.3f} (95 % CI {v.ci[0]:.3f}-{v.ci[1]:.3f}) on "
                f"{v.n_patients} held-out patients")
    else:
        what = f"verification AUC not estimable ({v.note if v is not None else 'not measured'})"
    console.print(f"trained {net.training.get('steps')} steps on {net.training.get('n_patients')} "
                  f"patients ({net.training.get('n_pairs')} same-patient pairs); {what} -> {out}")
