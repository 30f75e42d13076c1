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
