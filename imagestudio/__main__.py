"""`python -m imagestudio` = the `imagestudio` command."""

from .cli import app

app()
