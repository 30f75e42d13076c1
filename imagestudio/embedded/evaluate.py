"""Prompt adherence of a text-to-image model, scored by the judge.

Three fixed prompt sets, drawn from a seed that training never uses:
- single: one object, colour + kind + position, in the training caption grammar but a
  combination/wording not among the training captions;
- two: two objects in two positions;
- paraphrase: one object in sentence frames and position phrases that the training
  captions never use ("please draw one red disc in the left part").
An image counts when the judge finds every requested object (colour and kind at the
requested position).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from . import judge, renderer
from .training import TrainConfig

Generate = Callable[[list[str], list[int]], list]  # prompts, seeds -> PIL images


@dataclass
class Prompt:
    text: str
    objects: list[dict]
    seed: int


def training_captions(cfg: TrainConfig = TrainConfig()) -> set[str]:
    """The captions `training.stage_data` writes."""
    from .grounding import replay_scenes

    return set(replay_scenes(cfg.seed, cfg.scenes, cfg.color_weights)[1])


def training_data(folder) -> list[TrainConfig]:
    """The data set (seed, scenes, colour weights) of every training cycle of a model
    folder, read from its studio.json record: a continued model (`imagestudio train
    --init-from`) saw its own cycle's scenes and those of each model it continued from."""
    try:
        record = json.loads((Path(folder) / "studio.json").read_text()).get("training") or {}
    except (OSError, ValueError):
        record = {}
    out = []
    while record:
        if "seed" in record:
            out.append(TrainConfig(seed=int(record["seed"]), scenes=int(record.get("scenes", TrainConfig.scenes)),
                                   color_weights=record.get("color_weights") or None))
        record = record.get("continued_from") or {}
    return out or [TrainConfig()]


def all_training_captions(folder) -> set[str]:
    """Every caption the model in `folder` was trained on, over all its training cycles:
    the prompt sets exclude them, so no prompt is one the model saw verbatim."""
    out: set[str] = set()
    seen = set()
    for cfg in training_data(folder):
        # a cycle may reuse its source's scenes (same data): render each data set's captions once
        key = (cfg.seed, cfg.scenes, tuple(sorted((cfg.color_weights or {}).items())))
        if key not in seen:
            seen.add(key)
            out |= training_captions(cfg)
    return out


def prompt_sets(n: int, seed: int = 777, exclude: Optional[set[str]] = None) -> dict[str, list[Prompt]]:
    rng = random.Random(seed)
    exclude = exclude or set()
    sets: dict[str, list[Prompt]] = {"single": [], "two": [], "paraphrase": []}
    colors = list(renderer.COLORS)
    while min(len(v) for v in sets.values()) < n:
        for name in sets:
            if len(sets[name]) >= n:
                continue
            k = 2 if name == "two" else 1
            positions = rng.sample(list(renderer.POSITIONS), k)
            objs = [renderer.SceneObject(rng.choice(colors), rng.choice(renderer.KINDS), p, 40) for p in positions]
            if name == "paraphrase":
                text = renderer.paraphrase(objs[0], rng)
            else:
                t = rng.randrange(4)
                phrases = [renderer.object_phrase(o, rng, t, sized=False) for o in objs]
                text = ("; " if t == 1 else " and ").join(phrases)
            if text in exclude:
                continue
            sets[name].append(Prompt(text, [{"color": o.color, "kind": o.kind, "position": o.position}
                                            for o in objs], rng.randrange(2**31)))
    return sets


def model_guidance(folder, guidance: Optional[float] = None) -> float:
    """`guidance`, or else the model's own default from its studio.json (4.0 without one)."""
    if guidance is not None:
        return guidance
    try:
        return float(json.loads((Path(folder) / "studio.json").read_text())["default_guidance"])
    except (OSError, KeyError, ValueError):
        return 4.0


def diffusers_generator(folder, steps: int = 20, guidance: Optional[float] = None,
                        threads: Optional[int] = None) -> Generate:
    import torch
    from diffusers import StableDiffusionPipeline

    if threads:
        torch.set_num_threads(threads)
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    guidance = model_guidance(folder, guidance)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor

    def generate(prompts: list[str], seeds: list[int]) -> list:
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        with torch.inference_mode():
            return pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                        height=size, width=size).images

    return generate


def _slots(labels: list[dict], requested: list[list[dict]]):
    """Each requested object ("slot"), what the judge found at its position (None:
    nothing), and all the objects its prompt requested."""
    for found, wanted in zip(labels, requested):
        at = {o["position"]: o for o in found["objects"]}
        for r in wanted:
            yield r, at.get(r["position"]), wanted


def slot_breakdown(labels: list[dict], requested: list[list[dict]]) -> dict:
    """Why images fail adherence, per requested object ("slot"): the share of slots
    with an object at the requested position, with the requested kind there, with the
    requested colour there, and (prompts of several objects) showing another requested
    object's kind and colour there instead: attribute binding gone wrong."""
    counts = {"position": 0, "kind": 0, "color": 0, "other_object": 0}
    slots = 0
    for r, seen, wanted in _slots(labels, requested):
        slots += 1
        if seen is None:
            continue
        counts["position"] += 1
        counts["kind"] += seen["kind"] == r["kind"]
        counts["color"] += seen["color"] == r["color"]
        counts["other_object"] += any((seen["kind"], seen["color"]) == (o["kind"], o["color"])
                                      != (r["kind"], r["color"]) for o in wanted)
    return {k: round(v / max(slots, 1), 4) for k, v in counts.items()}


def colour_breakdown(labels: list[dict], requested: list[list[dict]]) -> dict:
    """Per requested colour, the share of its slots that show that colour at the
    requested place: which colours a model draws wrong most often."""
    right: dict[str, int] = {}
    slots: dict[str, int] = {}
    for r, seen, _ in _slots(labels, requested):
        slots[r["color"]] = slots.get(r["color"], 0) + 1
        right[r["color"]] = right.get(r["color"], 0) + (seen is not None and seen["color"] == r["color"])
    return {c: round(right[c] / slots[c], 4) for c in sorted(slots)}


def colour_confusions(labels: list[dict], requested: list[list[dict]]) -> dict:
    """How often each requested colour was drawn as another one at the requested place
    ("orange->red": 5), most frequent first: what a colour-focused cycle should aim at."""
    counts: dict[str, int] = {}
    for r, seen, _ in _slots(labels, requested):
        if seen is not None and seen["color"] != r["color"]:
            key = f"{r['color']}->{seen['color']}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _score(result: dict, name: str, labelled: list[dict], prompts: list[Prompt],
           seeds: Sequence[int], per_seed: dict) -> None:
    """A set's adherence and breakdowns, from the judge's labels of its images. With
    several prompt seeds the set holds their prompts one seed after the other, in equal
    shares: each share's adherence goes into `per_seed` as well."""
    ok = [judge.satisfies(l, p.objects) for l, p in zip(labelled, prompts)]
    requested = [p.objects for p in prompts]
    result[f"adherence_{name}"] = round(sum(ok) / len(prompts), 4)
    result[f"breakdown_{name}"] = slot_breakdown(labelled, requested)
    result[f"colours_{name}"] = colour_breakdown(labelled, requested)
    result[f"confusions_{name}"] = colour_confusions(labelled, requested)
    if len(seeds) > 1:
        share = len(prompts) // len(seeds)
        for i, s in enumerate(seeds):
            part = ok[i * share:(i + 1) * share]
            per_seed.setdefault(str(s), {})[f"adherence_{name}"] = round(sum(part) / len(part), 4)


def evaluate(generate: Generate, n_per_set: int = 32, batch: int = 8,
             seed: Union[int, Sequence[int]] = 777, judge_images: int = 400, exclude: Optional[set[str]] = None,
             progress: Optional[Callable[[int, int], None]] = None, keep_images: bool = False,
             studio: Optional[Generate] = None) -> dict:
    """Adherence per prompt set. `studio` generates the two-object set once more the way
    the studio does it for users (its engine, with regions read from the prompt): that
    score is `adherence_two_studio`, beside the plain pipeline's `adherence_two`.

    `seed` may list several prompt seeds: each gives `n_per_set` prompts per set, and the
    figures are over all of them (one 64-prompt set moves by about 6 points between
    seeds, too much to tell two cycles of the model apart)."""
    t0 = time.time()
    seeds = [seed] if isinstance(seed, int) else list(seed)
    by_seed = [prompt_sets(n_per_set, s, exclude) for s in seeds]
    sets = {name: [p for b in by_seed for p in b[name]] for name in by_seed[0]}
    result: dict = {}
    per_seed: dict = {}
    total = sum(len(v) for v in sets.values()) + (len(sets["two"]) if studio else 0)
    done = 0
    images_out = {}
    gen_seconds = 0.0
    for name, prompts in sets.items():
        imgs, labelled = [], []
        for i in range(0, len(prompts), batch):
            chunk = prompts[i:i + batch]
            tg = time.time()
            ims = generate([p.text for p in chunk], [p.seed for p in chunk])
            gen_seconds += time.time() - tg
            labelled += judge.analyze_batch(ims)
            imgs += ims
            done += len(chunk)
            if progress:
                progress(done, total)
        _score(result, name, labelled, prompts, seeds, per_seed)
        if keep_images:
            images_out[name] = list(zip(prompts, imgs))
    if studio is not None:
        labelled = []
        for p in sets["two"]:
            tg = time.time()
            image = studio([p.text], [p.seed])[0]
            gen_seconds += time.time() - tg
            labelled.append(judge.analyze(image))
            done += 1
            if progress:
                progress(done, total)
        _score(result, "two_studio", labelled, sets["two"], seeds, per_seed)
    acc = judge.judge_accuracy(judge_images)
    result["judge_accuracy"] = round(acc["objects"], 4)
    result["judge_background_accuracy"] = round(acc["background"], 4)
    result["judge_style_accuracy"] = round(acc["style"], 4)
    result["images"] = total
    result["prompt_seeds"] = seeds
    result["generation_seconds_per_image"] = round(gen_seconds / max(total, 1), 4)
    result["seconds"] = round(time.time() - t0, 1)
    if per_seed:
        result["per_seed"] = per_seed
    if keep_images:
        result["_images"] = images_out
    return result


# img2img's strength in the edit checks: low enough that the picture should keep its labels
EDIT_STRENGTH = 0.3


def edit_checks(folder, n: int = 16, seed: int = 4242, steps: int = 20,
                guidance: Optional[float] = None, studio: Optional[Callable] = None) -> dict:
    """img2img at strength 0.3 keeps the judge's labels of a rendered input (also
    reported with the studio's colour correction, `color_correction`); inpainting
    one object's box with a prompt naming a new colour changes that object's colour and
    no other label.

    The plain diffusers pipelines decode the whole picture through the VAE, so labels
    outside the mask can change too. `studio(image, mask, prompt, seed)` runs the same
    inpaint the way users get it (the studio's engine, which puts the original pixels back
    outside the mask): its score is reported as `inpaint_recolor_studio`."""
    import numpy as np
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline
    from PIL import Image

    guidance = model_guidance(folder, guidance)  # what users get unless they set it
    base = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)
    i2i = StableDiffusionImg2ImgPipeline(**base.components)
    inp = StableDiffusionInpaintPipeline(**base.components)
    for p in (i2i, inp):
        p.set_progress_bar_config(disable=True)
    rng = random.Random(seed)
    from ..engine.images import match_colors

    keep = keep_matched = recolor = recolor_studio = 0
    for i in range(n):
        sc = renderer.random_scene(rng, n_objects=2, style="flat")
        image = renderer.render(sc)
        truth = sc.labels()
        text = " and ".join(renderer.object_phrase(o, rng, 0, sized=False) for o in sc.objects)
        g = torch.Generator().manual_seed(i)
        out = i2i(text, image=image, strength=EDIT_STRENGTH, num_inference_steps=steps, guidance_scale=guidance,
                  generator=g).images[0]
        keep += judge.exact_objects(judge.analyze(out), truth)
        # the same result with the studio's img2img colour correction (engine.images)
        keep_matched += judge.exact_objects(judge.analyze(match_colors(out, image)), truth)
        # recolour the first object
        target = sc.objects[0]
        new_color = rng.choice([c for c in renderer.allowed_colors(sc.background) if c != target.color])
        cx, cy = renderer.POSITIONS[target.position]
        cx, cy = cx + target.dx, cy + target.dy
        h = target.size // 2 + 6
        mask = Image.new("L", image.size, 0)
        mask.paste(255, (max(cx - h, 0), max(cy - h, 0), min(cx + h, image.width), min(cy + h, image.height)))
        new = renderer.SceneObject(new_color, target.kind, target.position, target.size)
        ptext = " and ".join(renderer.object_phrase(o, rng, 0, sized=False) for o in [new] + sc.objects[1:])
        out = inp(ptext, image=image, mask_image=mask, strength=1.0, num_inference_steps=steps,
                  guidance_scale=guidance, generator=torch.Generator().manual_seed(i), height=image.height,
                  width=image.width).images[0]
        want = {"objects": [{"color": new_color, "kind": target.kind, "position": target.position}]
                + truth["objects"][1:]}
        recolor += judge.exact_objects(judge.analyze(out), want)
        if studio is not None:
            recolor_studio += judge.exact_objects(judge.analyze(studio(image, mask, ptext, i)), want)
    result = {"img2img_keeps_labels": round(keep / n, 4),
              "img2img_keeps_labels_color_corrected": round(keep_matched / n, 4),
              "inpaint_recolor": round(recolor / n, 4),
              "edit_images": 2 * n}
    if studio is not None:
        result["inpaint_recolor_studio"] = round(recolor_studio / n, 4)
        result["edit_images"] += n
    return result


def engine_inpainter(model: str = "embedded", models_dir=None, steps: int = 20,
                     guidance: Optional[float] = None) -> Callable:
    """Inpaint through the studio's engine: the request users send, mask blur and
    composite included."""
    import base64
    import io

    from ..engine.catalog import Catalog
    from ..engine.core import Engine
    from ..request import GenerationRequest, Mode

    engine = Engine(Catalog(models_dir))

    def uri(im) -> str:
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    def inpaint(image, mask, prompt: str, seed: int):
        req = GenerationRequest(prompt=prompt, model=model, mode=Mode.inpaint, init_image=uri(image),
                                mask=uri(mask), strength=1.0, seed=seed, count=1, steps=steps,
                                guidance=guidance, width=image.width, height=image.height)
        return engine.generate(req).images[0].image

    return inpaint


def engine_generator(model: str, models_dir=None, steps: int = 20, guidance: Optional[float] = None,
                     auto_regions: Optional[bool] = None) -> Generate:
    """Generate through the studio's engine (catalog model by name, its own defaults;
    `auto_regions` None: the model's own setting)."""
    from ..engine.catalog import Catalog
    from ..engine.core import Engine
    from ..request import GenerationRequest

    engine = Engine(Catalog(models_dir))
    engine.model(model)  # fail early on an unknown name

    def generate(prompts: list[str], seeds: list[int]) -> list:
        out = []
        for prompt, seed in zip(prompts, seeds):
            req = GenerationRequest(prompt=prompt, model=model, seed=seed % 2**32, count=1, steps=steps,
                                    guidance=guidance, auto_regions=auto_regions)
            out.append(engine.generate(req).images[0].image)
        return out

    return generate


SHOWCASE = [
    "a red circle on the left", "a blue house at the top", "left side: one yellow star",
    "a green tree in the center, at sunset", "a pink flower on the right, comic style, bold outlines",
    "a purple boat at the bottom, by the sea", "an orange square on the left and a blue triangle on the right",
    "a yellow star in the middle, neon glow",
    "a brown house in the center, in the snow, 3d shaded render", "a blue circle at the top, pastel colors",
    "a red boat on the right, at night", "a green triangle at the bottom, on a white background",
    "a pink flower in the middle, grassy meadow", "a yellow circle at the top and a green tree below",
    "a purple star on the left, comic style, bold outlines", "a red house on the right, neon glow",
]


def showcase_grid(generate: Generate, path, prompts: list[str] = SHOWCASE, seed: int = 0, cols: int = 8):
    """A grid of the model's images for the README (prompts above, seed i for image i)."""
    from PIL import Image

    images = []
    for i in range(0, len(prompts), 8):
        chunk = prompts[i:i + 8]
        images += generate(chunk, [seed + i + j for j in range(len(chunk))])
    size = images[0].width
    rows = (len(images) + cols - 1) // cols
    grid = Image.new("RGB", (cols * size, rows * size), "white")
    for i, im in enumerate(images):
        grid.paste(im, ((i % cols) * size, (i // cols) * size))
    grid.save(path)
    return grid
