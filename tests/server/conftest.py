"""Fixtures for server tests: a models folder with tiny pipelines (1 credit
per 64×64 image), one engine shared by every in-thread server of the session,
and PostgreSQL / Redis backends isolated per test (unique schema / queue)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from serverkit import make_models_dir, start_server

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def server_models(tmp_path_factory) -> Path:
    return make_models_dir(tmp_path_factory.mktemp("server-models"))


@pytest.fixture(scope="session")
def server_engine(server_models):
    from imagestudio.engine import Catalog, Engine, PipelineCache

    return Engine(Catalog(server_models, include_embedded=False), PipelineCache(max_models=2))


@pytest.fixture
def make_server(tmp_path, server_models, server_engine):
    """make_server(**settings) -> RunningServer; all are stopped at teardown."""
    started = []

    def make(data_dir: Path | None = None, **settings):
        server = start_server(data_dir or tmp_path / f"data{len(started)}", server_models,
                              engine=server_engine, catalog=server_engine.catalog, **settings)
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()


@pytest.fixture
def local_server(make_server):
    return make_server()


@pytest.fixture
def pg_url():
    """A PostgreSQL URL whose search_path is a fresh schema (dropped afterwards)."""
    psycopg = pytest.importorskip("psycopg")
    schema = "t_" + uuid.uuid4().hex[:12]
    try:
        conn = psycopg.connect(PG_BASE, autocommit=True, connect_timeout=3)
    except Exception as err:  # pragma: no cover - every CI machine runs PostgreSQL
        pytest.skip(f"PostgreSQL not reachable at {PG_BASE}: {err}")
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


@pytest.fixture
def redis_queue():
    """(redis_url, queue_name) for a RedisHuey queue of this test only."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as err:  # pragma: no cover
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {err}")
    name = "imagestudio-test-" + uuid.uuid4().hex[:8]
    yield REDIS_URL, name
    for key in client.scan_iter(f"*{name}*"):
        client.delete(key)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studio.db'}"
    return request.getfixturevalue("pg_url")
