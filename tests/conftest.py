"""Shared fixtures: tiny pipelines saved once per test session in the
AUTOMATIC1111 folder layout, so every test goes through the real catalog and
loading code."""

import os
import sys
from pathlib import Path

import pytest

# Tests never reach a model hub; keep torch steady on 2 shared cores.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """models/Stable-diffusion/{tiny,tiny-inpaint}: a 4- and a 9-channel UNet."""
    from tiny import save_tiny_pipeline

    root = tmp_path_factory.mktemp("models")
    save_tiny_pipeline(root / "Stable-diffusion" / "tiny")
    save_tiny_pipeline(root / "Stable-diffusion" / "tiny-inpaint", inpaint=True)
    return root


@pytest.fixture(scope="session")
def tiny_engine(tiny_models_dir):
    from imagestudio.engine import Catalog, Engine, PipelineCache

    return Engine(Catalog(tiny_models_dir, include_embedded=False), PipelineCache(max_models=2))
