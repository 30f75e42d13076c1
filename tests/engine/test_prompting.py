"""Prompt features as the user sees them in images and their metadata."""

import numpy as np

from imagestudio.request import GenerationRequest
from imagestudio.store.metadata import parse_parameters

BASE = dict(model="tiny", width=64, height=64, steps=2, seed=11)


def pixels(result):
    return np.asarray(result.images[0].image, dtype=np.int16)


def test_weights_change_the_image(tiny_engine):
    plain = tiny_engine.generate(GenerationRequest(prompt="a red circle", **BASE))
    weighted = tiny_engine.generate(GenerationRequest(prompt="a (red:1.6) circle", **BASE))
    assert not np.array_equal(pixels(plain), pixels(weighted))


def test_words_past_the_77_token_window_still_count(tiny_engine):
    filler = ", ".join(["a red circle"] * 30)  # ~120 tokens
    a = tiny_engine.generate(GenerationRequest(prompt=filler + ", green tree", **BASE))
    b = tiny_engine.generate(GenerationRequest(prompt=filler + ", blue boat", **BASE))
    assert not np.array_equal(pixels(a), pixels(b))


def test_style_and_negative_are_recorded(tiny_engine):
    result = tiny_engine.generate(GenerationRequest(prompt="a yellow star", style="comic", negative_prompt="blurry",
                                                    **BASE))
    params = parse_parameters(result.images[0].parameters)
    assert params["Style"] == "Comic"
    assert "bold outlines" in params["prompt"] and "a yellow star" in params["prompt"]
    assert params["negative_prompt"].startswith("blurry")


def test_auto_style_records_its_choice(tiny_engine):
    result = tiny_engine.generate(GenerationRequest(prompt="neon city street at night with robots", style="Auto",
                                                    **BASE))
    assert parse_parameters(result.images[0].parameters)["Style"] == "Cyberpunk"
    assert result.info["style"] == "Cyberpunk"


def test_enhance_adds_terms_deterministically(tiny_engine):
    a = tiny_engine.generate(GenerationRequest(prompt="a cat on a sofa", enhance=True, **BASE))
    b = tiny_engine.generate(GenerationRequest(prompt="a cat on a sofa", enhance=True, **BASE))
    prompt = parse_parameters(a.images[0].parameters)["prompt"]
    assert prompt.startswith("a cat on a sofa") and "sharp focus" in prompt
    assert np.array_equal(pixels(a), pixels(b))
