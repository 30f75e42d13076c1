"""`imagestudio serve`: the studio as a web service (native, AUTOMATIC1111 and
OpenAI APIs, job queue with a worker in the same process)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command()(serve)


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind. Any address other than loopback implies --shared."),
    port: int = typer.Option(7860, help="Port (7860 is where AUTOMATIC1111 clients look)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data folder: database, queue, images (default $IMAGESTUDIO_DATA or ./data)."),
    models: Optional[Path] = typer.Option(None, "--models", help="Models folder (default <data>/models)."),
    shared: bool = typer.Option(False, "--shared", help="Require API keys and charge credits (see `imagestudio users`)."),
    redis: Optional[str] = typer.Option(None, "--redis", help="Queue on Redis (redis://host:6379/0) instead of SQLite."),
    db: Optional[str] = typer.Option(None, "--db", help="Database URL (default SQLite in the data folder), e.g. postgresql+psycopg://user@host/db"),
    queue_name: str = typer.Option("imagestudio", "--queue-name", help="Queue name, to share one Redis between studios."),
    worker: bool = typer.Option(True, "--worker/--no-worker", help="Run the job worker in this process."),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve the studio: web page at /, APIs at /api, /sdapi/v1 and /v1/images, docs at /docs."""
    import uvicorn

    from ..server.app import create_app
    from ..server.settings import Settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kwargs = dict(host=host, port=port, shared=shared, redis_url=redis, db_url=db, queue_name=queue_name, worker=worker)
    if data is not None:
        kwargs["data_dir"] = data
    if models is not None:
        kwargs["models_dir"] = models
    settings = Settings(**kwargs)
    mode = "shared (API keys required)" if settings.shared else "local (no keys, unlimited credits)"
    typer.echo(f"Image Studio on http://{host}:{port}  mode: {mode}  data: {settings.data_dir}", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30)
