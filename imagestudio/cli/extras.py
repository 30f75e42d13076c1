"""`imagestudio upscale | analyse`: work on an existing image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import StudioError
from .generate import console, fail, make_engine, out, validation_message


def register(app: typer.Typer) -> None:
    app.command()(upscale)
    app.command()(analyse)


def upscale(
    image: Path = typer.Argument(..., help="The image to enlarge."),
    scale: float = typer.Option(2.0, "--scale", "-s", help="How many times larger (1-8)."),
    upscaler: str = typer.Option("Lanczos", "--upscaler", "-u",
                                 help="Lanczos, Nearest, Studio (the studio's own network) or a model in models/ESRGAN."),
    models: Optional[Path] = typer.Option(None, "--models", help="Models folder (for user upscalers)."),
    out_dir: Path = typer.Option(Path("outputs"), "--out", "-o", help="Where to write the PNG."),
    list_only: bool = typer.Option(False, "--list", help="List the available upscalers and exit."),
) -> None:
    """Enlarge an image; its generation settings (if any) are kept in the PNG."""
    from pydantic import ValidationError

    from ..engine import request_json
    from ..request import GenerationRequest
    from ..store.metadata import save_png

    engine = make_engine(models)
    if list_only:
        from ..engine.upscale import list_upscalers

        for name in list_upscalers(engine.catalog.models_dir):
            out.print(name, highlight=False)
        return
    if not image.is_file():
        fail(f"file not found: {image}")
    try:
        request = GenerationRequest(mode="upscale", init_image=str(image), upscale_factor=scale, upscaler=upscaler)
        result = engine.generate(request)
    except ValidationError as err:
        fail(validation_message(err))
    except StudioError as err:
        fail(str(err), err.exit_code)
    (img,) = result.images
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{image.stem}-{result.request.upscaler.lower()}-x{scale:g}.png"
    save_png(img.image, path, img.parameters, request_json(result.request, 0))
    console.print(f"{img.image.width}x{img.image.height} in {result.info['seconds']:.1f}s", highlight=False)
    out.print(str(path), highlight=False)


def analyse(
    image: Path = typer.Argument(..., help="An image: a studio/A1111 PNG gives its exact settings."),
    models: Optional[Path] = typer.Option(None, "--models", help="Models folder (to suggest a model and size)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole analysis as JSON."),
) -> None:
    """Propose a prompt, a model and a size for an image."""
    from ..engine.analyse import analyse as run_analysis
    from ..request import load_image

    if not image.is_file():
        fail(f"file not found: {image}")
    try:
        picture = load_image(str(image), what="image")
        result = run_analysis(picture, make_engine(models).catalog)
    except StudioError as err:
        fail(str(err), err.exit_code)
    if as_json:
        out.print_json(json.dumps(result, default=str))
        return
    source = {"parameters": "settings stored in the file", "judge": "described by the embedded judge",
              "none": "nothing known about this image"}[result["source"]]
    out.print(f"source: {source}", highlight=False, markup=False)
    if result.get("guess"):
        out.print(f"(low confidence {result['confidence']}: the image may be outside the judge's domain)",
                  highlight=False, markup=False)
    out.print(f"prompt: {result['prompt']}", highlight=False, markup=False)
    if result.get("negative_prompt"):
        out.print(f"negative prompt: {result['negative_prompt']}", highlight=False, markup=False)
    out.print(f"model: {result['model'] or '-'}", highlight=False, markup=False)
    size = result.get("suggested_size")
    suggestion = f" (suggested {size[0]}x{size[1]})" if size else ""
    out.print(f"size: {result['width']}x{result['height']}, aspect {result['aspect_ratio']}{suggestion}",
              highlight=False, markup=False)
