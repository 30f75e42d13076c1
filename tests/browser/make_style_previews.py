"""Make the style picker's preview thumbnails with the embedded model:

    .venv/bin/python tests/browser/make_style_previews.py [--model NAME] [--models DIR]

One picture per style preset (same scene, same seed, the style's own words),
written to imagestudio/web/styles/<slug>.png, where the page looks for it when
the API gives no preview URL."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "imagestudio" / "web" / "styles"
#: A scene inside the embedded model's world (shapes, colours, places, skies).
SCENE = "a red house on the left and a yellow star on the right, blue sky"
SEED = 11


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="catalog name (default: the default model)")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: embedded only)")
    parser.add_argument("--prompt", default=SCENE)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--size", type=int, default=96, help="thumbnail side in pixels")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from PIL import Image

    from imagestudio.engine import Catalog, Engine
    from imagestudio.prompts import list_styles
    from imagestudio.request import GenerationRequest

    engine = Engine(Catalog(args.models))
    args.out.mkdir(parents=True, exist_ok=True)
    for style in list_styles():
        request = GenerationRequest(prompt=args.prompt, style=style.name, model=args.model, seed=args.seed)
        image = engine.generate(request).images[0].image
        thumb = image.convert("RGB").resize((args.size, args.size), Image.LANCZOS)
        path = args.out / f"{slug(style.name)}.png"
        thumb.save(path, optimize=True)
        print(f"{style.name:16} -> {path}")


if __name__ == "__main__":
    main()
