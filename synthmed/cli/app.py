"""The typer application every command module registers itself on."""

import typer

app = typer.Typer(
    name="synthmed",
    help="Synthetic virtual-patient cohorts from medical images, audited for privacy before release.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
