"""The evaluator's judge reads rendered ground truth reliably, and the adherence rule
asks for every requested attribute."""

import random

from imagestudio.embedded import judge, renderer


def test_judge_accuracy_on_rendered_ground_truth():
    acc = judge.judge_accuracy(n=200, seed=31337)
    assert acc["objects"] >= 0.98, acc
    assert acc["background"] >= 0.95 and acc["style"] >= 0.95, acc


def test_analyze_reads_one_image():
    sc = renderer.Scene([renderer.SceneObject("yellow", "star", "right", 46)], "night", "flat", seed=4)
    labels = judge.analyze(renderer.render(sc))
    assert [(o["color"], o["kind"], o["position"]) for o in labels["objects"]] == [("yellow", "star", "right")]
    assert labels["background"] == "night" and labels["style"] == "flat"


def test_satisfies_needs_every_requested_object():
    labels = {"objects": [{"color": "red", "kind": "circle", "position": "left"}], "background": "white",
              "style": "flat"}
    want = {"color": "red", "kind": "circle", "position": "left"}
    assert judge.satisfies(labels, [want])
    assert not judge.satisfies(labels, [{**want, "position": "right"}])
    assert not judge.satisfies(labels, [want, {"color": "blue", "kind": "boat", "position": "top"}])
    assert not judge.satisfies(labels, [want], background="night")


def test_prompt_sets_leave_out_the_captions_of_every_training_cycle(tmp_path):
    """A continued model saw its own cycle's captions and its source's: no eval prompt may
    be one of them verbatim."""
    import json

    from imagestudio.embedded import evaluate as ev
    from imagestudio.embedded.training import TrainConfig

    weights = {"brown": 3.0, "purple": 3.0}
    record = {"finetune_steps": 2, "seed": 5, "scenes": 300, "color_weights": weights,
              "continued_from": {"unet_steps": 2, "finetune_steps": 2, "seed": 6, "scenes": 200}}
    (tmp_path / "studio.json").write_text(json.dumps({"training": record}))
    assert [(c.seed, c.scenes, c.color_weights) for c in ev.training_data(tmp_path)] == [
        (5, 300, weights), (6, 200, None)]
    seen = ev.all_training_captions(tmp_path)
    first = ev.training_captions(TrainConfig(seed=5, scenes=300, color_weights=weights))
    second = ev.training_captions(TrainConfig(seed=6, scenes=200))
    assert seen == first | second and second - first  # the source's captions count too
    # the colour weights change the draw, so the captions too: the record must carry them
    assert first != ev.training_captions(TrainConfig(seed=5, scenes=300))
    sets = ev.prompt_sets(16, seed=1, exclude=seen)
    assert not {p.text for ps in sets.values() for p in ps} & seen
    # a folder without a record falls back to the default recipe's data
    assert ev.training_data(tmp_path / "none") == [TrainConfig()]


def test_slot_breakdown_tells_a_swap_from_a_miss():
    """The eval's breakdown of failed slots, read by the judge from rendered pictures:
    two objects drawn in each other's places count as placed, wrong kind and colour,
    and another requested object; a missing object counts as not placed."""
    from imagestudio.embedded import evaluate as ev

    want = [{"color": "red", "kind": "circle", "position": "left"},
            {"color": "blue", "kind": "house", "position": "right"}]
    swapped = renderer.Scene([renderer.SceneObject("blue", "house", "left", 46),
                              renderer.SceneObject("red", "circle", "right", 46)], "white", "flat", seed=3)
    half = renderer.Scene([renderer.SceneObject("red", "circle", "left", 46)], "white", "flat", seed=3)
    labels = judge.analyze_batch([renderer.render(swapped), renderer.render(half)])
    assert ev.slot_breakdown(labels[:1], [want]) == {"position": 1.0, "kind": 0.0, "color": 0.0, "other_object": 1.0}
    assert ev.slot_breakdown(labels[1:], [want]) == {"position": 0.5, "kind": 0.5, "color": 0.5, "other_object": 0.0}
