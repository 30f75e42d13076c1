"""img2img colour correction (AUTOMATIC1111's "Apply color correction to img2img
results"): the result gets the init image's colour distribution back, keeps its own
layout, says so in its PNG, and is refused where it would undo what was asked."""

import numpy as np
import pytest
from PIL import Image
from skimage import color

from imagestudio.engine.images import match_colors
from imagestudio.request import GenerationRequest
from imagestudio.store.metadata import parse_parameters

BASE = dict(mode="img2img", prompt="a portrait, detailed", model="tiny", steps=3, seed=7, strength=0.7)
QUANTILES = (5, 25, 50, 75, 95)


def lab_quantiles(image) -> np.ndarray:
    """The 5th..95th percentiles of L*, a* and b*: a picture's colour distribution."""
    lab = color.rgb2lab(np.asarray(image.convert("RGB")) / 255.0).reshape(-1, 3)
    return np.percentile(lab, QUANTILES, axis=0)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = a.argsort().argsort(), b.argsort().argsort()
    return float(np.corrcoef(ra, rb)[0, 1])


def test_engine_matches_the_init_images_colours_and_keeps_the_layout(tiny_engine, astronaut):
    raw = tiny_engine.generate(GenerationRequest(**BASE, init_image=str(astronaut))).images[0]
    fixed = tiny_engine.generate(GenerationRequest(**BASE, init_image=str(astronaut), color_correction=True)).images[0]
    source = lab_quantiles(Image.open(astronaut))
    # the tiny model's img2img moves the colours far off; matching brings them back
    off = np.abs(lab_quantiles(raw.image) - source).max()
    # (not to 0: matched L*a*b* triples outside the sRGB gamut are clipped)
    assert off > 20 and np.abs(lab_quantiles(fixed.image) - source).max() < min(6, off / 4), off
    # the same generated picture, remapped channel by channel: its layout (the order of
    # its pixels' lightness) is the generated one's, not the init image's
    raw_l = color.rgb2lab(np.asarray(raw.image) / 255.0)[..., 0].ravel()
    fixed_l = color.rgb2lab(np.asarray(fixed.image) / 255.0)[..., 0].ravel()
    src_l = color.rgb2lab(np.asarray(Image.open(astronaut).convert("RGB")) / 255.0)[..., 0].ravel()
    assert rank_correlation(fixed_l, raw_l) > 0.95
    assert rank_correlation(fixed_l, raw_l) > rank_correlation(fixed_l, src_l) + 0.1
    params = parse_parameters(fixed.parameters)
    assert params["Color correction"] == "yes" and "Color correction" not in parse_parameters(raw.parameters)


def test_a_colour_cast_is_undone():
    import skimage.data

    photo = Image.fromarray(skimage.data.coffee()).resize((160, 120), Image.LANCZOS)
    arr = np.asarray(photo).astype(float)
    cast = Image.fromarray(np.clip(arr * [1.25, 0.9, 0.7] + [20, 0, -10], 0, 255).astype(np.uint8))
    before = np.abs(np.asarray(cast).astype(int) - arr).mean()
    after = np.abs(np.asarray(match_colors(cast, photo)).astype(int) - arr).mean()
    assert before > 15 and after < before / 4, (before, after)  # (the cast clipped some reds)
    # a reference of another size is resized to the image's first
    assert match_colors(cast, photo.resize((80, 60))).size == cast.size


@pytest.mark.parametrize("fields", [
    dict(prompt="a red circle"),
    dict(prompt="a red circle", mode="inpaint", init_image="in.png", mask="mask.png"),
    dict(prompt="a red circle", mode="outpaint", init_image="in.png", outpaint={"left": 64}),
    dict(prompt="a red circle", mode="variation", variation_strength=0.3),
])
def test_refused_outside_img2img(fields):
    with pytest.raises(ValueError, match="color correction applies to img2img"):
        GenerationRequest(color_correction=True, **fields)
