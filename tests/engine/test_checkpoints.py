"""User model files: the catalog finds them in the A1111/ComfyUI layout, and
pickled checkpoints are only ever read by torch's restricted loader."""

import os
from pathlib import Path

import pytest
import torch

from imagestudio.engine import Catalog
from imagestudio.engine.pipelines import restricted_state_dict
from imagestudio.errors import UnsafeCheckpoint


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/imagestudio-pwned",))


def test_malicious_pickle_is_refused_by_name(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": Exploit()}, path)
    Path("/tmp/imagestudio-pwned").unlink(missing_ok=True)
    with pytest.raises(UnsafeCheckpoint, match="refused to load evil.ckpt"):
        restricted_state_dict(path)
    assert not Path("/tmp/imagestudio-pwned").exists()


def test_plain_tensors_pass_the_restricted_loader(tmp_path):
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.x": torch.ones(3)}}, path)
    assert torch.equal(restricted_state_dict(path)["model.diffusion_model.x"], torch.ones(3))


def test_catalog_scans_the_a1111_and_comfyui_layouts(tiny_models_dir, tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "checkpoints").mkdir()
    save_file({"conditioner.embedders.1.model.x": torch.zeros(1),
               "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)},
              str(tmp_path / "checkpoints" / "myxl.safetensors"))
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 9, 3, 3)},
              str(tmp_path / "checkpoints" / "sd15-inpainting.safetensors"))
    (tmp_path / "checkpoints" / "old.ckpt").write_bytes(b"")
    os.symlink(tiny_models_dir / "Stable-diffusion" / "tiny", tmp_path / "checkpoints" / "tiny")
    models = {m.name: m for m in Catalog(tmp_path, include_embedded=False).list()}
    assert models["myxl"].architecture == "sdxl" and models["myxl"].native_size == 1024
    assert models["sd15-inpainting"].inpainting and models["sd15-inpainting"].architecture == "sd15"
    assert models["old"].source == "pickled"
    assert models["tiny"].source == "diffusers" and models["tiny"].native_size == 128
    assert len(models["tiny"].hash) == 10


def test_a_model_whose_card_takes_a_listed_name_is_listed_under_its_folder(tiny_models_dir, tmp_path):
    """A retrained embedded model's export carries the card name "embedded": dropped into
    models/ it was hidden behind the built-in one, with no way to choose it."""
    import shutil

    copy = tmp_path / "Stable-diffusion" / "my-retrain"
    shutil.copytree(tiny_models_dir / "Stable-diffusion" / "tiny", copy)
    (copy / "studio.json").write_text('{"name": "embedded", "description": "retrained"}')
    catalog = Catalog(tmp_path)
    names = [m.name for m in catalog.list()]
    assert names == ["embedded", "my-retrain"]
    assert catalog.get("my-retrain").path == str(copy) and catalog.get("my-retrain").description == "retrained"
    assert catalog.get("embedded").source == "embedded"


@pytest.fixture(scope="module")
def single_file_models(tmp_path_factory):
    """models/Stable-diffusion/tiny-single.safetensors (original LDM keys), its
    config in models/configs/sd15, and the same weights pickled as a .ckpt."""
    import sys
    import shutil

    from diffusers import StableDiffusionPipeline

    from ldm_format import save_ldm_checkpoint
    from tiny import save_tiny_pipeline

    root = tmp_path_factory.mktemp("single")
    config = save_tiny_pipeline(root / "configs" / "sd15")
    pipe = StableDiffusionPipeline.from_pretrained(config)
    (root / "Stable-diffusion").mkdir()
    path = save_ldm_checkpoint(pipe, root / "Stable-diffusion" / "tiny-single.safetensors")
    from safetensors.torch import load_file

    torch.save({"state_dict": load_file(str(path))}, root / "Stable-diffusion" / "tiny-pickled.ckpt")
    for sub in ("unet", "vae", "text_encoder"):  # the config folder needs no weights
        for f in (config / sub).glob("*.safetensors"):
            f.unlink()
    return root, config


def test_single_file_checkpoint_generates_like_its_diffusers_folder(single_file_models, tiny_models_dir):
    import numpy as np

    from imagestudio.engine import Engine
    from imagestudio.request import GenerationRequest

    root, _ = single_file_models
    catalog = Catalog(root, include_embedded=False)
    names = {m.name: m for m in catalog.list()}
    assert names["tiny-single"].source == "single_file" and names["tiny-single"].config.endswith("sd15")
    engine = Engine(catalog)
    req = dict(prompt="a red circle", width=64, height=64, steps=2, seed=3)
    single = engine.generate(GenerationRequest(model="tiny-single", **req)).images[0].image
    pickled = engine.generate(GenerationRequest(model="tiny-pickled", **req)).images[0].image
    folder = Engine(Catalog(tiny_models_dir, include_embedded=False)).generate(
        GenerationRequest(model="tiny", **req)).images[0].image
    assert np.array_equal(np.asarray(single), np.asarray(folder))
    assert np.array_equal(np.asarray(pickled), np.asarray(folder))


def test_single_file_without_config_names_what_is_missing(tmp_path):
    from safetensors.torch import save_file

    from imagestudio.engine import Engine
    from imagestudio.errors import ModelLoadError
    from imagestudio.request import GenerationRequest

    (tmp_path / "checkpoints").mkdir()
    save_file({"conditioner.embedders.1.model.x": torch.zeros(1)}, str(tmp_path / "checkpoints" / "xl.safetensors"))
    engine = Engine(Catalog(tmp_path, include_embedded=False))
    with pytest.raises(ModelLoadError, match=r"xl.safetensors: no configuration .*/configs/sdxl/"):
        engine.generate(GenerationRequest(prompt="x", model="xl", steps=1))


def test_shipped_sd15_config_is_the_real_architecture():
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTokenizer

    from imagestudio.engine.catalog import SHIPPED_CONFIGS

    tokenizer = CLIPTokenizer.from_pretrained(SHIPPED_CONFIGS / "sd15" / "tokenizer")
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SHIPPED_CONFIGS / "sd15" / "unet"))
    assert round(sum(p.numel() for p in unet.parameters()) / 1e6, 1) == 859.5
