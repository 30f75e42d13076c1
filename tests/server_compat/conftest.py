"""Real servers on free loopback ports for the compatibility tests: one in
local mode, one in shared mode (API keys, credits), sharing one engine so
the tiny pipelines load once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def compat_models(tmp_path_factory):
    from serverkit import make_models_dir
    from tiny import save_tiny_controlnet

    models = make_models_dir(tmp_path_factory.mktemp("compat-models"))
    save_tiny_controlnet(models)
    return models


@pytest.fixture(scope="session")
def compat_engine(compat_models):
    from imagestudio.engine import Catalog, Engine, PipelineCache

    # No embedded model: "tiny" is the default, whatever ships in the package.
    catalog = Catalog(compat_models, include_embedded=False)
    return Engine(catalog, PipelineCache(max_models=2)), catalog


@pytest.fixture(scope="session")
def local_server(tmp_path_factory, compat_models, compat_engine):
    from serverkit import start_server

    engine, catalog = compat_engine
    with start_server(tmp_path_factory.mktemp("compat-local"), compat_models, engine=engine, catalog=catalog) as server:
        yield server


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory, compat_models, compat_engine):
    from serverkit import start_server

    engine, catalog = compat_engine
    with start_server(tmp_path_factory.mktemp("compat-shared"), compat_models, engine=engine, catalog=catalog,
                      shared=True, queue_name="compat-shared") as server:
        yield server


@pytest.fixture
def port(local_server):
    return int(local_server.url.rsplit(":", 1)[1])


@pytest.fixture
def api(port):
    """The real `webuiapi` client on the local server, model "tiny" selected."""
    import webuiapi

    client = webuiapi.WebUIApi(host="127.0.0.1", port=port, sampler="Euler a", steps=2)
    client.set_options({"sd_model_checkpoint": "tiny"})
    return client
