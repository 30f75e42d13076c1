"""The studio server: wires the store, the job service and the routers.
Nothing here generates or stores anything itself."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..jobs.queue import make_huey
from ..jobs.service import JobService
from ..store.accounts import local_account
from ..store.db import Database
from . import errors
from .limits import BodyLimitMiddleware
from .settings import Settings

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def build_service(settings: Settings, *, engine: Any = None, catalog: Any = None, huey: Any = None) -> JobService:
    """The job service for these settings (the engine and queue can be given,
    e.g. to share one loaded engine between servers in a test or benchmark)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if engine is None or catalog is None:
        from ..engine import Catalog, Engine

        catalog = catalog or getattr(engine, "catalog", None) or Catalog(settings.models_dir)
        engine = engine or Engine(catalog)
    db = Database(settings.database_url)
    huey = huey or make_huey(settings.data_dir, settings.redis_url, settings.queue_name)
    return JobService(
        db,
        engine,
        catalog,
        settings.data_dir,
        huey,
        allow_paths=settings.allow_paths,
        max_upload_bytes=settings.max_upload_bytes,
    )


def create_app(settings: Optional[Settings] = None, *, service: Optional[JobService] = None,
               engine: Any = None, catalog: Any = None) -> FastAPI:
    settings = settings or Settings()
    service = service or build_service(settings, engine=engine, catalog=catalog)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Blocking calls (A1111 txt2img waits for its job) hold a worker thread
        # each: allow many, so waiting clients never starve quick requests.
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.thread_limit
        service.db.create_all()
        app.state.local_user = None if settings.shared else local_account(service.db)
        service.start(worker=settings.worker, workers=settings.workers)
        log.info("Image Studio serving %s (%s mode)", settings.data_dir, "shared" if settings.shared else "local")
        try:
            yield
        finally:
            service.stop()
            service.db.dispose()

    app = FastAPI(
        title="Image Studio",
        version=__version__,
        description="Local-first AI image studio: native API (/api), AUTOMATIC1111 API (/sdapi/v1), "
        "OpenAI Images API (/v1/images).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.local_user = None
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)

    from .routers import a1111, native, openai

    app.include_router(native.router, prefix="/api")
    app.include_router(a1111.router, prefix="/sdapi/v1")
    app.include_router(openai.router, prefix="/v1/images")

    if WEB_DIR.is_dir() and (WEB_DIR / "index.html").exists():
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    else:
        @app.get("/", include_in_schema=False)
        def _root():
            return RedirectResponse("/docs")

    return app
