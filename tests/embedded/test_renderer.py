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


def test_colour_weights_make_the_rare_colours_as_common_as_the_others():
    """Brown and purple are forbidden on some backgrounds, so a uniform draw gives them
    about half the share of the others; training can weigh them up (`--color-weights`)."""
    from collections import Counter

    def shares(weights):
        rng, counts = random.Random(3), Counter()
        for _ in range(3000):
            counts.update(o.color for o in renderer.random_scene(rng, color_weights=weights).objects)
        total = sum(counts.values())
        return {c: counts[c] / total for c in renderer.COLORS}

    plain, weighted = shares(None), shares({"brown": 2.0, "purple": 2.5})
    assert plain["brown"] < 0.6 * plain["red"] and plain["purple"] < 0.6 * plain["red"]
    for c in ("brown", "purple"):
        assert 0.8 < weighted[c] / weighted["red"] < 1.25, (c, weighted)
    # every drawn colour is still one the scene's background allows
    rng = random.Random(4)
    for _ in range(300):
        sc = renderer.random_scene(rng, color_weights={"brown": 5.0})
        assert all(o.color in renderer.allowed_colors(sc.background) for o in sc.objects)
