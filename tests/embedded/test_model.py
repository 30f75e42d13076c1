"""The shipped model loads offline through the ordinary diffusers pipeline and draws
what it is asked for (checked by the judge)."""

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from imagestudio.embedded import WEIGHTS_DIR, judge, model_dir, studio_info  # noqa: E402


def test_shipped_weights_are_small_fp16_safetensors():
    files = list(WEIGHTS_DIR.rglob("*.safetensors"))
    assert files, "no weights shipped"
    assert not list(WEIGHTS_DIR.rglob("*.bin")) and not list(WEIGHTS_DIR.rglob("*.pt"))
    assert sum(f.stat().st_size for f in files) <= 40 * 1024 * 1024
    from safetensors import safe_open

    with safe_open(str(WEIGHTS_DIR / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        key = next(iter(f.keys()))
        assert str(f.get_tensor(key).dtype) == "torch.float16"


def test_catalog_entry():
    info = studio_info()
    assert info["name"] == "embedded" and info["native_size"] == 128
    assert info["default_sampler"] in {"Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC"}
    assert {"colors", "objects", "positions", "backgrounds", "styles"} <= set(info["can_draw"])
    sched = json.loads((WEIGHTS_DIR / "scheduler" / "scheduler_config.json").read_text())
    assert sched["prediction_type"] == "v_prediction" and sched["timestep_spacing"] == "trailing"
    assert sched["clip_sample"] is False


@pytest.fixture(scope="module")
def pipe():
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(min(2, torch.get_num_threads()))
    p = StableDiffusionPipeline.from_pretrained(str(model_dir()), local_files_only=True)
    p.set_progress_bar_config(disable=True)
    return p


def test_model_dir_is_a_complete_offline_pipeline(pipe):
    assert pipe.text_encoder.config.use_attention_mask is True
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    # weighting syntax reaches the tokenizer as plain words once the parser strips it
    ids = pipe.tokenizer("red circle").input_ids
    assert pipe.tokenizer.unk_token_id not in ids


@pytest.mark.parametrize("sampler", ["DPMSolverMultistepScheduler", "EulerDiscreteScheduler", "DDIMScheduler"])
def test_generation_is_judged_right(pipe, sampler):
    import diffusers
    import torch

    pipe.scheduler = getattr(diffusers, sampler).from_config(pipe.scheduler.config)
    image = pipe("a red circle on the left", num_inference_steps=12, guidance_scale=studio_info()["default_guidance"],
                 generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (128, 128)
    labels = judge.analyze(image)
    # The shipped model reliably draws the requested colour at the requested place (a red
    # object on the left for seeds 0-3 with each of these samplers); the kind is still below
    # the issue's target (circle vs square: see the eval table in the README, "The embedded
    # model"), so this fast test holds it to colour and position.
    assert any((o["color"], o["position"]) == ("red", "left") for o in labels["objects"]), labels


def test_edit_checks_score_the_studio_inpaint_which_keeps_the_rest_exactly():
    import numpy as np

    from imagestudio.embedded import evaluate as ev

    studio = ev.engine_inpainter(steps=4)
    seen = []

    def recording(image, mask, prompt, seed):
        out = studio(image, mask, prompt, seed)
        seen.append((image, mask, out))
        return out

    result = ev.edit_checks(model_dir(), n=1, steps=4, studio=recording)
    assert {"img2img_keeps_labels", "img2img_keeps_labels_color_corrected", "inpaint_recolor",
            "inpaint_recolor_studio"} <= set(result)
    assert result["edit_images"] == 3
    image, mask, out = seen[0]
    outside = np.asarray(mask) == 0
    assert outside.mean() > 0.5  # one object's box is repainted, the rest is kept
    assert np.array_equal(np.asarray(out)[outside], np.asarray(image)[outside])
    assert not np.array_equal(np.asarray(out)[~outside], np.asarray(image)[~outside])


def test_an_inpaint_that_leaves_out_the_strength_recolours_the_masked_object(tmp_path):
    """The request users send from the CLI or the API without a strength: the masked boat
    comes out in the new colour, the other object stays. (At img2img's 0.6 this check
    failed for seeds 0-2; see DEFAULT_INPAINT_STRENGTH.)"""
    import numpy as np
    from PIL import Image

    from imagestudio.embedded import renderer
    from imagestudio.engine.catalog import Catalog
    from imagestudio.engine.core import Engine
    from imagestudio.request import GenerationRequest

    scene = renderer.Scene([renderer.SceneObject("red", "boat", "left", 40),
                            renderer.SceneObject("yellow", "circle", "right", 36)], "white", "flat")
    image = renderer.render(scene)
    assert judge.exact_objects(judge.analyze(image), scene.labels())
    cx, cy = renderer.POSITIONS["left"]
    mask = Image.new("L", image.size, 0)
    mask.paste(255, (max(cx - 26, 0), max(cy - 26, 0), cx + 26, cy + 26))
    image.save(tmp_path / "scene.png")
    mask.save(tmp_path / "mask.png")

    request = GenerationRequest(mode="inpaint", prompt="a green boat on the left and a yellow circle on the right",
                                init_image=str(tmp_path / "scene.png"), mask=str(tmp_path / "mask.png"), seed=0,
                                width=128, height=128)
    assert request.strength == 0.9
    out = Engine(Catalog(None)).generate(request).images[0].image
    want = {"objects": [{"color": "green", "kind": "boat", "position": "left"},
                        {"color": "yellow", "kind": "circle", "position": "right"}]}
    assert judge.exact_objects(judge.analyze(out), want), judge.analyze(out)
    outside = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(out)[outside], np.asarray(image)[outside])
