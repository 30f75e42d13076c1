"""SDXL: two text encoders, penultimate hidden states and a pooled embedding."""

import numpy as np
import pytest
import torch

from imagestudio.prompts import encode_prompts_sdxl

WINDOW = 77
CPU = torch.device("cpu")


@pytest.mark.parametrize("prompt, negative", [("a red circle on the left", "blurry"), ("a cat", "")])
def test_plain_prompt_equals_the_pipelines_own_encoding(tiny_sdxl_pipe, prompt, negative):
    ours = encode_prompts_sdxl(tiny_sdxl_pipe, prompt, negative)
    # diffusers zeroes the negative when none is given: "" means none here
    theirs = tiny_sdxl_pipe.encode_prompt(prompt, device=CPU, num_images_per_prompt=1,
                                          do_classifier_free_guidance=True, negative_prompt=negative or None)
    assert ours[0].shape == (1, WINDOW, 64) and ours[2].shape == (1, 32)
    for mine, expected in zip(ours, theirs):
        assert torch.equal(mine, expected)


def test_long_weighted_prompt_keeps_its_second_chunk_and_draws(tiny_sdxl_pipe):
    tail = " ".join(["red blue circle square star house sun boat"] * 12)  # 96 tokens
    emb, neg, pooled, neg_pooled = encode_prompts_sdxl(tiny_sdxl_pipe, "a (cat:1.4), " + tail, "blurry")
    assert emb.shape == neg.shape == (1, 2 * WINDOW, 64)
    other, *_ = encode_prompts_sdxl(tiny_sdxl_pipe, "a (cat:1.4), " + tail.replace("boat", "dog"), "blurry")
    assert not torch.equal(other[:, WINDOW:], emb[:, WINDOW:])
    plain, *_ = encode_prompts_sdxl(tiny_sdxl_pipe, "a cat, " + tail, "blurry")
    assert not torch.equal(plain[:, 2], emb[:, 2])  # "cat" is weighted in both encoders' halves

    images = tiny_sdxl_pipe(prompt_embeds=emb, negative_prompt_embeds=neg, pooled_prompt_embeds=pooled,
                            negative_pooled_prompt_embeds=neg_pooled, num_inference_steps=2, height=32, width=32,
                            output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()
