"""The scene renderer: deterministic pixels, exact labels, varied captions, all styles."""

import random

import numpy as np

from imagestudio.embedded import renderer


def test_same_scene_same_pixels_and_size():
    a = renderer.random_scene(random.Random(5))
    b = renderer.random_scene(random.Random(5))
    assert a.labels() == b.labels()
    ia, ib = renderer.render(a), renderer.render(b)
    assert ia.size == (128, 128) and ia.mode == "RGB"
    assert np.array_equal(np.asarray(ia), np.asarray(ib))


def test_object_colour_appears_where_it_was_placed():
    sc = renderer.Scene([renderer.SceneObject("red", "square", "left", 44)], "white", "flat", seed=1)
    arr = np.asarray(renderer.render(sc)).astype(int)
    x, y = renderer.POSITIONS["left"]
    assert np.abs(arr[y, x] - np.array(renderer.COLORS["red"])).max() < 10
    rx, ry = renderer.POSITIONS["right"]
    assert arr[ry, rx].min() > 230  # the right side is still the white background


def test_styles_change_the_image():
    obj = [renderer.SceneObject("blue", "circle", "center", 48)]
    pics = {s: np.asarray(renderer.render(renderer.Scene(obj, "white" if s != "neon" else "black", s, seed=3))).astype(int)
            for s in renderer.STYLES}
    for s in ("comic", "pastel", "shaded"):
        assert np.abs(pics[s] - pics["flat"]).mean() > 2, s
    assert pics["comic"].min() < 30  # bold black outline
    assert pics["neon"].mean() < pics["flat"].mean()  # glow on dark


def test_captions_vary_and_name_every_object():
    rng = random.Random(0)
    sc = renderer.Scene([renderer.SceneObject("red", "circle", "left", 40),
                         renderer.SceneObject("green", "boat", "right", 36)], "sea", "comic", seed=2)
    caps = {renderer.caption(sc, rng) for _ in range(40)}
    assert len(caps) > 10
    for c in caps:
        assert "red" in c and "green" in c and "comic style, bold outlines" in c
    styles = {renderer.caption(renderer.Scene(sc.objects, "night", s), rng) for s in ("neon", "pastel", "shaded")}
    assert any("neon glow" in c for c in styles) and any("3d shaded render" in c for c in styles)


def test_vocabulary_is_rich_enough():
    assert len(renderer.COLORS) >= 8 and len(renderer.KINDS) >= 5
    assert len(renderer.STYLES) >= 3 and {"day", "sunset", "night", "sea", "grass", "snow"} <= set(renderer.BACKGROUNDS)
