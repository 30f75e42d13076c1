"""Re-draw the README's extras figures (docs/images/extras-*.png).

    OMP_NUM_THREADS=1 .venv/bin/python docs/images/extras-make.py [--models DIR]

upscale: a held-out photo shrunk 4x, then enlarged by Nearest, Lanczos and the
studio network, beside the original. control: what the canny and scribble
preprocessors hand a ControlNet. control-embedded: three sketches and what the
embedded model draws from each through its shipped ControlNet. keep: img2img of a portrait with and without
--keep-faces, drift figures in the labels (uses the default model, or
--model NAME from --models DIR)."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def strip(panels: list[tuple[str, Image.Image]], side: int) -> Image.Image:
    label_h = 18
    out = Image.new("RGB", (side * len(panels) + 4 * (len(panels) - 1), side + label_h), "white")
    draw = ImageDraw.Draw(out)
    for i, (label, image) in enumerate(panels):
        x = i * (side + 4)
        out.paste(image.convert("RGB").resize((side, side), Image.NEAREST), (x, label_h))
        draw.text((x + 3, 3), label, fill="black")
    return out


def upscale_figure() -> None:
    from imagestudio.engine.sr_train import photo, psnr, shrink
    from imagestudio.engine.upscale import upscale

    truth = photo("coffee")
    box = (320, 200, 416, 296)  # 96x96 of the original: the spoon on the saucer
    small = shrink(truth, 4)
    import numpy as np

    size = (small.width * 4, small.height * 4)
    target = np.asarray(truth.crop((0, 0, *size)))
    panels = []
    for name in ("Nearest", "Lanczos", "Studio"):
        big = upscale(small, 4, name)
        panels.append((f"{name} {psnr(np.asarray(big), target, 4):.2f} dB", big.crop(box)))
    panels.append(("original", truth.crop(box)))
    strip(panels, 192).save(HERE / "extras-upscale.png")


def control_figure() -> None:
    import skimage.data

    from imagestudio.engine.control import canny, scribble

    photo = Image.fromarray(skimage.data.astronaut()).resize((192, 192), Image.LANCZOS)
    drawing = Image.new("RGB", (192, 192), "white")
    d = ImageDraw.Draw(drawing)
    d.polygon([(40, 100), (96, 44), (152, 100)], outline="black", width=2)
    d.rectangle((56, 100, 136, 160), outline="black", width=2)
    d.ellipse((140, 20, 176, 56), outline="black", width=2)
    strip([("photo", photo), ("canny", canny(photo)), ("drawing", drawing), ("scribble", scribble(drawing))],
          192).save(HERE / "extras-control.png")


def control_embedded_figure() -> None:
    """Sketches (as drawn on the page) and the embedded model's images guided
    by them; the prompts name colour and kind, never the position."""
    from imagestudio.engine import Catalog, Engine
    from imagestudio.request import Control, GenerationRequest

    engine = Engine(Catalog(None))
    shapes = [("a red circle", lambda d: d.ellipse((10, 44, 50, 84), outline="black", width=2)),
              ("a green square", lambda d: d.rectangle((78, 44, 118, 84), outline="black", width=2)),
              ("a blue triangle", lambda d: d.polygon([(64, 10), (44, 50), (84, 50)], outline="black", width=2))]
    panels = []
    for prompt, draw in shapes:
        drawing = Image.new("RGB", (128, 128), "white")
        draw(ImageDraw.Draw(drawing))
        source = HERE / ".sketch.png"
        drawing.save(source)
        image = engine.generate(GenerationRequest(prompt=prompt, seed=1, control=Control(type="scribble", image=str(source))))
        source.unlink()
        panels += [("sketch", drawing), (f'"{prompt}"', image.images[0].image)]
    strip(panels, 160).save(HERE / "extras-control-embedded.png")


def keep_figure(models: Path | None, model: str | None) -> None:
    import skimage.data

    from imagestudio.engine import Catalog, Engine
    from imagestudio.request import GenerationRequest

    source = HERE / ".astronaut.png"
    Image.fromarray(skimage.data.astronaut()).resize((128, 128), Image.LANCZOS).save(source)
    engine = Engine(Catalog(models))
    base = dict(mode="img2img", prompt="a portrait, detailed", model=model, seed=3, strength=0.6,
                init_image=str(source))
    free = engine.generate(GenerationRequest(**base)).images[0]
    kept = engine.generate(GenerationRequest(**base, keep_faces=True)).images[0]
    source_image = Image.open(source).convert("RGB")
    source.unlink()
    strip([("input", source_image), (f"img2img SSIM {free.drift['ssim']:.2f}", free.image),
           (f"keep faces SSIM {kept.drift['ssim']:.2f}", kept.image)], 192).save(HERE / "extras-keep.png")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--skip-keep", action="store_true")
    parser.add_argument("--only", choices=("upscale", "control", "control-embedded", "keep"))
    args = parser.parse_args()
    figures = {"upscale": upscale_figure, "control": control_figure, "control-embedded": control_embedded_figure,
               "keep": lambda: keep_figure(args.models, args.model)}
    for name, make in figures.items():
        if args.only in (None, name) and not (name == "keep" and args.skip_keep):
            make()


if __name__ == "__main__":
    main()
