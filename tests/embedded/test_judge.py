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
