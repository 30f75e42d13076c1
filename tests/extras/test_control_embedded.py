"""The ControlNet shipped for the embedded model follows what it is given.

A user's sketch (black lines on white, as drawn on the page) and a canny
edge map each guide a generation whose prompt names colour and kind but no
position. The embedded model's judge reads where the object landed, and
edge overlap measures whether the image's edges lie on the control's.

Thresholds, from `control_train.evaluate` and runs of these very cases
(seeds 0-2) with the shipped weights: an uncontrolled image of the same
prompt puts its object at the requested place about a quarter of the time
(the model picks a place itself) and scores edge F1 0.0-0.3 against the
sketch (once 0.5: a free triangle drawn at the top, hence the triangle is
sketched at the bottom); guided images scored 0.37-0.78, with the sketched
shape judged at the sketched place in 9 of 9. So every guided image must have an object
where the sketch is, the sketched shape must be judged there in at least one
of the two seeds, and mean F1 must be at least 0.3 and 0.15 above the
uncontrolled images of the same seeds."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imagestudio.engine.control import SHIPPED_DIR, edge_overlap, preprocess
from imagestudio.request import Control, GenerationRequest

SHIPPED = SHIPPED_DIR / "embedded-scribble"
pytestmark = pytest.mark.skipif(not (SHIPPED / "config.json").exists(), reason="no shipped ControlNet")

SIZE = 128
SEEDS = (0, 1)


def sketch(kind: str) -> Image.Image:
    """What a user draws: a 2-pixel black outline on white paper."""
    image = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(image)
    if kind == "circle":  # on the left
        draw.ellipse((10, 44, 50, 84), outline="black", width=2)
    elif kind == "square":  # on the right
        draw.rectangle((78, 44, 118, 84), outline="black", width=2)
    else:  # a triangle at the bottom (the eighth-cycle model, free, draws "a red triangle" at
        # the top on seed 0: there a sketch could not be told from no sketch)
        draw.polygon([(64, 78), (44, 118), (84, 118)], outline="black", width=2)
    return image


@pytest.fixture(scope="module")
def engine():
    import torch

    from imagestudio.engine import Catalog, Engine

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return Engine(Catalog(None))


def objects(image: Image.Image) -> set[tuple[str, str]]:
    """(kind, position) of each object the embedded model's judge sees."""
    from imagestudio.embedded import judge

    return {(o["kind"], o["position"]) for o in judge.analyze(image)["objects"]}


def run(engine, prompt: str, seed: int, control: Control | None = None) -> Image.Image:
    request = GenerationRequest(prompt=prompt, seed=seed, steps=12, control=control)
    return engine.generate(request).images[0].image


@pytest.mark.parametrize("kind, position", [("circle", "left"), ("square", "right"), ("triangle", "bottom")])
def test_a_sketch_puts_the_shape_where_it_is_drawn(engine, tmp_path, kind, position):
    drawing = tmp_path / f"{kind}.png"
    sketch(kind).save(drawing)
    lines = preprocess("scribble", sketch(kind), (SIZE, SIZE))
    guided_f1, free_f1, shapes = [], [], 0
    for seed in SEEDS:
        guided = run(engine, f"a red {kind}", seed, Control(type="scribble", image=str(drawing)))
        free = run(engine, f"a red {kind}", seed)
        seen = objects(guided)
        assert position in {p for _, p in seen}, (kind, seed, seen)
        shapes += (kind, position) in seen
        guided_f1.append(edge_overlap(guided, lines)["f1"])
        free_f1.append(edge_overlap(free, lines)["f1"])
    assert shapes >= 1, f"no {kind} judged on the {position} in {len(SEEDS)} guided images"
    assert np.mean(guided_f1) >= 0.3, guided_f1
    assert np.mean(guided_f1) >= np.mean(free_f1) + 0.15, (guided_f1, free_f1)


def test_canny_edges_of_held_out_scenes_guide_the_layout(engine):
    """control_train.evaluate on held-out rendered scenes (prompted with colour
    and kind, no position): canny edges through the shipped ControlNet (the
    only one for this model, so `canny` uses it) against the same seeds
    without control."""
    from imagestudio.engine.control_train import evaluate

    scores = evaluate(engine, "embedded", "embedded-scribble", kind="canny", n=12, steps=12)
    guided, free = scores["controlled"], scores["free"]
    # 12 scenes, not 6: the eighth-cycle model, free, happens to put 4 of the first 6 scenes'
    # objects at their place (5 of 12). Guided, 10 of 12 (16 held-out scenes: 81%, README).
    assert guided["position"] >= 0.6, scores
    assert guided["position"] >= free["position"] + 0.3, scores
    assert guided["edge_f1"] >= max(0.3, free["edge_f1"] + 0.15), scores
