"""`imagestudio users add|grant|keys|list`: accounts and credits for shared mode.
Works on the same database the server uses (--data / --db)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

users_app = typer.Typer(help="Users, API keys and credits for shared mode.", no_args_is_help=True)

DataOpt = typer.Option(None, "--data", help="Data folder (default $IMAGESTUDIO_DATA or ./data).")
DbOpt = typer.Option(None, "--db", help="Database URL (default SQLite in the data folder).")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


def _db(data: Optional[Path], db_url: Optional[str]):
    from ..server.settings import Settings
    from ..store.db import Database

    settings = Settings(**({"data_dir": data} if data else {}), db_url=db_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.database_url)
    database.create_all()
    return database


def _fail(message: str, code: int = 2):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@users_app.command("add")
def add(
    name: str = typer.Argument(..., help="User name."),
    credits: int = typer.Option(0, "--credits", help="Starting balance."),
    data: Optional[Path] = DataOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Create a user and print their API key (shown once: only a hash is stored)."""
    from ..store import accounts

    database = _db(data, db)
    try:
        account, key = accounts.add_user(database, name, credits)
    except ValueError as err:
        _fail(str(err))
    typer.echo(f"user {account.name} created with {account.credits} credits", err=True)
    typer.echo(key)


@users_app.command("grant")
def grant(
    name: str = typer.Argument(...),
    amount: int = typer.Argument(..., help="Credits to add; negative takes away (never below zero): `users grant -- NAME -5`."),
    data: Optional[Path] = DataOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Add credits to a user's balance."""
    from ..errors import StudioError
    from ..store import accounts

    try:
        account = accounts.grant(_db(data, db), name, amount)
    except StudioError as err:
        _fail(str(err), err.exit_code)
    typer.echo(f"{account.name}: {account.credits if account.credits is not None else 'unlimited'} credits")


@users_app.command("keys")
def keys(name: str = typer.Argument(...), data: Optional[Path] = DataOpt, db: Optional[str] = DbOpt) -> None:
    """Make a new API key for a user and print it (older keys keep working)."""
    from ..errors import StudioError
    from ..store import accounts

    try:
        key = accounts.new_key(_db(data, db), name)
    except StudioError as err:
        _fail(str(err), err.exit_code)
    typer.echo(key)


@users_app.command("list")
def list_(data: Optional[Path] = DataOpt, db: Optional[str] = DbOpt) -> None:
    """Users, balances and key prefixes."""
    from ..store import accounts

    for row in accounts.list_users(_db(data, db)):
        credits = "unlimited" if row["credits"] is None else row["credits"]
        typer.echo(f"{row['name']}\t{credits}\t{', '.join(row['keys']) or '-'}")
