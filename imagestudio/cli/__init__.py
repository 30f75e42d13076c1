"""The `imagestudio` command. Each command group lives in its own module and
registers itself on the app; this file only wires them together."""

import typer

from . import extras, generate, serve, users, train

app = typer.Typer(
    help="Image Studio: generate and edit images locally, or serve the studio to a team.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for module in (generate, serve, users, train, extras):
    module.register(app)
