"""Real servers on free loopback ports for the compatibility tests: one in
local mode, one in shared mode (API keys, credits), sharing one engine so
the tiny pipelines load once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def compat_models(tmp_path_factory):
    from serverkit import make_models_dir

    models = make_models_dir(tmp_path_factory.mktemp("compat-models"))
    _save_tiny_controlnet(models)
    return models


def _save_tiny_controlnet(models):
    """models/ControlNet/tiny-canny: a ControlNet of the tiny UNet whose zero
    convolutions are randomised, so that it visibly changes the image."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(models / "Stable-diffusion" / "tiny", subfolder="unet")
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    torch.manual_seed(3)
    with torch.no_grad():
        for module in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]:
            module.weight.normal_(0, 0.3)
    net.save_pretrained(models / "ControlNet" / "tiny-canny")


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
