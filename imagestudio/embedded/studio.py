"""The embedded model's catalog entry (written to weights/studio.json)."""

from __future__ import annotations

from . import renderer


def studio_entry() -> dict:
    return {
        "name": "embedded",
        "description": (
            "Small built-in text-to-image model (Stable Diffusion architecture, trained here "
            "on procedural scenes): 1-3 coloured shapes and simple things (house, tree, flower, "
            "boat) on the left/right/top/bottom/center, over plain, sky, sunset, night, sea, "
            "grass or snow backgrounds, in flat, comic, pastel, neon or 3d-shaded style. 128x128."
        ),
        "native_size": renderer.SIZE,
        "default_steps": 20,
        # 2.5, not 4: stronger guidance oversaturates the model's browns into reds and its
        # oranges into yellows; measured over five prompt seeds (README, "Guidance 2.5")
        "default_guidance": 2.5,
        "default_sampler": "DPM++ 2M",
        # not read from the prompt: until the sixth cycle the model alone mixed two objects'
        # colours and kinds up and a region each helped; since the seventh (text layer
        # trained) it binds them itself, and regions measured the same or worse (README)
        "auto_regions": False,
        "can_draw": {
            "colors": list(renderer.COLORS),
            "objects": list(renderer.KINDS),
            "positions": list(renderer.POSITIONS),
            "backgrounds": list(renderer.BACKGROUNDS),
            "styles": list(renderer.STYLES),
        },
        "style_words": {k: v[0] for k, v in renderer.STYLE_WORDS.items()},
    }
