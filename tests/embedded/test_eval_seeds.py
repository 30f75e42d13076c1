"""`evaluate` over several prompt seeds: the figures pool every seed's prompts, and each
seed's own share is reported under `per_seed`.

The generator here is no model: it renders each prompt's requested scene with the
renderer (for seed 778's prompts, an empty sky instead), so what the judge should find
is known and the pooled and per-seed figures can be checked exactly."""

from imagestudio.embedded import evaluate as ev
from imagestudio.embedded import renderer


def _oracle(seeds, n, blank_seed):
    wanted = {}
    for s in seeds:
        for prompts in ev.prompt_sets(n, s).values():
            for p in prompts:
                wanted[(p.text, p.seed)] = (p.objects, s == blank_seed)

    def generate(texts, prompt_seeds):
        images = []
        for text, seed in zip(texts, prompt_seeds):
            objects, blank = wanted[(text, seed)]
            drawn = [] if blank else [renderer.SceneObject(o["color"], o["kind"], o["position"], 40)
                                      for o in objects]
            images.append(renderer.render(renderer.Scene(drawn, "day", "flat", seed=seed)))
        return images

    return generate


def test_several_prompt_seeds_pool_and_report_each_seed():
    seeds, n = [777, 778], 4
    result = ev.evaluate(_oracle(seeds, n, blank_seed=778), n_per_set=n, seed=seeds, judge_images=20)
    assert result["images"] == 3 * n * len(seeds)
    assert result["prompt_seeds"] == seeds
    for name in ("single", "two", "paraphrase"):
        assert result["per_seed"]["777"][f"adherence_{name}"] == 1.0, name  # drawn as asked
        assert result["per_seed"]["778"][f"adherence_{name}"] == 0.0, name  # nothing drawn
        assert result[f"adherence_{name}"] == 0.5, name  # over both seeds' prompts
    # nothing drawn means no slot placed: the breakdown pools the seeds too
    assert result["breakdown_single"]["position"] == 0.5


def test_one_prompt_seed_has_no_per_seed_part():
    result = ev.evaluate(_oracle([779], 2, blank_seed=None), n_per_set=2, seed=779, judge_images=20)
    assert result["adherence_single"] == 1.0 and result["prompt_seeds"] == [779]
    assert "per_seed" not in result


def test_colour_breakdown_names_the_colour_drawn_wrong():
    wanted = [[{"color": "red", "kind": "circle", "position": "left"},
               {"color": "blue", "kind": "boat", "position": "right"}]] * 2
    found = [{"objects": [{"color": "red", "kind": "circle", "position": "left"},
                          {"color": "purple", "kind": "boat", "position": "right"}]},
             {"objects": [{"color": "red", "kind": "circle", "position": "left"},
                          {"color": "blue", "kind": "boat", "position": "right"}]}]
    assert ev.colour_breakdown(found, wanted) == {"blue": 0.5, "red": 1.0}
    assert ev.colour_confusions(found, wanted) == {"blue->purple": 1}
