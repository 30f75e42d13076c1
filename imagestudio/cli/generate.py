"""`imagestudio generate | models | styles | info`: the studio from a terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import StudioError
from ..paths import models_dir as default_models_dir

console = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "request"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def make_engine(models: Optional[Path]):
    from ..engine import Catalog, Engine

    return Engine(Catalog(models or default_models_dir()))


def register(app: typer.Typer) -> None:
    app.command()(generate)
    app.command()(models)
    app.command()(styles)
    app.command()(info)


def generate(
    prompt: str = typer.Argument("", help="What to draw. (word:1.5) gives a word more weight."),
    negative: str = typer.Option("", "--negative", "-n", help="What to avoid."),
    mode: Optional[str] = typer.Option(None, help="txt2img, img2img, inpaint, outpaint or variation (inferred from the inputs)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Reference image for img2img/inpaint/outpaint/variation."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Inpaint mask: white = repaint."),
    outpaint: Optional[str] = typer.Option(None, "--outpaint", help="Extend the canvas: left=128,right=128 (or one number for all sides)."),
    count: int = typer.Option(1, "--count", "-c", help="Images to make (1-4)."),
    aspect: Optional[str] = typer.Option(None, "--aspect", help="16:9, 1:1, 9:16, 4:3, 3:4, 3:2 or 2:3."),
    width: Optional[int] = typer.Option(None, "--width"),
    height: Optional[int] = typer.Option(None, "--height"),
    style: Optional[str] = typer.Option(None, "--style", help="Style preset, or Auto."),
    enhance: bool = typer.Option(False, "--enhance", help="Add detail and quality terms to the prompt."),
    seed: int = typer.Option(-1, "--seed", help="-1 = random."),
    variation_seed: Optional[int] = typer.Option(None, "--variation-seed"),
    variation_strength: float = typer.Option(0.0, "--variation-strength"),
    strength: Optional[float] = typer.Option(None, "--strength", help="Denoising strength for img2img/inpaint "
                                             "(default 0.6 for img2img, 0.9 for inpaint; 0.4-0.8 is img2img's useful range)."),
    sampler: Optional[str] = typer.Option(None, "--sampler"),
    steps: Optional[int] = typer.Option(None, "--steps"),
    guidance: Optional[float] = typer.Option(None, "--guidance", "--cfg"),
    model: Optional[str] = typer.Option(None, "--model", "-m"),
    models: Optional[Path] = typer.Option(None, "--models", help="Models folder (default: $IMAGESTUDIO_MODELS or data/models)."),
    hires_scale: Optional[float] = typer.Option(None, "--hires-scale", help="Hires fix: generate, upscale by this (e.g. 2), then img2img."),
    hires_strength: float = typer.Option(0.45, "--hires-strength", help="Hires fix: denoising strength of the second pass."),
    hires_steps: Optional[int] = typer.Option(None, "--hires-steps", help="Hires fix: steps of the second pass (default: --steps)."),
    upscaler: str = typer.Option("Lanczos", "--upscaler", help="Hires fix upscaler: Lanczos, Studio or a model in models/ESRGAN."),
    control: Optional[str] = typer.Option(None, "--control", help="ControlNet guidance: canny, scribble or grayscale (needs --control-image)."),
    control_image: Optional[Path] = typer.Option(None, "--control-image", help="Photo (canny) or drawing (scribble) to follow."),
    control_weight: float = typer.Option(1.0, "--control-weight", help="ControlNet conditioning scale (0-2)."),
    control_start: float = typer.Option(0.0, "--control-start", help="Fraction of the steps where control starts."),
    control_end: float = typer.Option(1.0, "--control-end", help="Fraction of the steps where control ends."),
    control_model: Optional[str] = typer.Option(None, "--control-model", help="ControlNet name in models/ControlNet."),
    keep: Optional[Path] = typer.Option(None, "--keep", help="img2img: mask whose white pixels stay exactly as they are."),
    keep_faces: bool = typer.Option(False, "--keep-faces", help="img2img: keep detected faces unchanged."),
    color_correction: bool = typer.Option(False, "--color-correction", help="img2img: match the result's colours "
                                          "to the init image's (A1111's color correction)."),
    region: list[str] = typer.Option([], "--region", help="AREA=PROMPT: a part of the picture with a prompt of its "
                                     "own, e.g. 'left=a red circle' (areas: left, right, top, bottom, center, "
                                     "top-left, ..., left-half, ... or x0,y0,x1,y1 fractions). Repeatable."),
    auto_regions: Optional[bool] = typer.Option(None, "--auto-regions/--no-auto-regions", help="Read regions "
                                                "from the prompt's place words (default: the model's setting)."),
    from_image: Optional[Path] = typer.Option(None, "--from", help="Re-run the exact settings stored in a studio PNG."),
    out_dir: Path = typer.Option(Path("outputs"), "--out", "-o", help="Where to write the PNGs."),
) -> None:
    """Generate images (every mode) and write PNGs that carry their settings."""
    from ..request import GenerationRequest, Mode, Outpaint

    index: Optional[int] = None
    try:
        if from_image is not None:
            request, index = _request_from_image(from_image)
        else:
            if mode is None:
                mode = "outpaint" if outpaint else "inpaint" if mask else "img2img" if init else "txt2img"
            for path, what in ((init, "init image"), (mask, "mask"), (keep, "keep mask"), (control_image, "control image")):
                if path is not None and not path.is_file():
                    fail(f"{what} file not found: {path}")
            request = GenerationRequest(
                mode=Mode(mode) if mode in Mode.__members__ else mode,
                prompt=prompt, negative_prompt=negative, style=style, enhance=enhance, model=model,
                aspect_ratio=aspect, width=width, height=height, count=count, steps=steps, guidance=guidance,
                sampler=sampler, seed=seed, variation_seed=variation_seed, variation_strength=variation_strength,
                strength=strength, init_image=str(init) if init else None, mask=str(mask) if mask else None,
                outpaint=Outpaint.parse(outpaint) if outpaint else Outpaint(),
                keep_mask=str(keep) if keep else None, keep_faces=keep_faces,
                color_correction=color_correction,
                hires_scale=hires_scale, hires_strength=hires_strength, hires_steps=hires_steps, upscaler=upscaler,
                control=_control(control, control_image, control_weight, control_start, control_end, control_model),
                regions=[_region(text) for text in region], auto_regions=auto_regions,
            )
        engine = make_engine(models)
        request = engine.prepare(request)
        result = _run_with_progress(engine, request)
    except ValidationError as err:
        fail(validation_message(err))
    except StudioError as err:
        fail(str(err), err.exit_code)
    except ValueError as err:
        fail(str(err))
    from ..engine import request_json
    from ..store.metadata import save_png

    out_dir.mkdir(parents=True, exist_ok=True)
    for img in result.images:
        if index is not None and img.index != index:
            continue
        path = _free_path(out_dir, img.seed)
        save_png(img.image, path, img.parameters, request_json(result.request, img.index))
        out.print(str(path), highlight=False)
        if img.drift:
            kept = f", kept regions {img.drift['kept_ssim']:.3f}" if img.drift["kept_ssim"] is not None else ""
            console.print(f"  drift: SSIM {img.drift['ssim']:.3f} overall{kept}", highlight=False)


def _region(text: str) -> dict:
    """`left=a red circle` or `0,0,0.5,1=a red circle` -> a Region's fields."""
    area, sep, prompt = text.partition("=")
    if not sep or not prompt.strip():
        raise ValueError(f"--region expects AREA=PROMPT, e.g. 'left=a red circle', got {text!r}")
    area = area.strip()
    if "," in area:
        try:
            return {"area": [float(v) for v in area.split(",")], "prompt": prompt}
        except ValueError:
            raise ValueError(f"a region box is four fractions x0,y0,x1,y1, got {area!r}") from None
    return {"area": area, "prompt": prompt}


def _control(kind, image, weight, start, end, model):
    from ..request import Control

    if kind is None and image is None:
        return None
    if kind is None or image is None:
        fail("--control and --control-image go together, e.g. --control canny --control-image photo.png")
    return Control(type=kind, image=str(image), weight=weight, start=start, end=end, model=model)


def _request_from_image(path: Path):
    from ..request import GenerationRequest
    from ..store.metadata import read_request

    if not path.is_file():
        fail(f"file not found: {path}")
    try:
        stored = read_request(path)
    except Exception as err:  # noqa: BLE001 - any decode failure is the same user error
        fail(f"{path} could not be read as a PNG ({err})")
    if not stored:
        fail(f"{path} holds no Image Studio settings (was it made by the studio?)")
    return GenerationRequest.model_validate(stored["request"]), int(stored.get("index", 0))


def _run_with_progress(engine, request):
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as bar:
        label = f"{request.count} image{'s' if request.count > 1 else ''}, seed {request.seed}"
        task = bar.add_task(label, total=request.steps)
        return engine.generate(request, on_progress=lambda p: bar.update(task, completed=p.step, total=p.total))


def _free_path(folder: Path, seed: int) -> Path:
    n = len(list(folder.glob("*.png")))
    while True:
        path = folder / f"{n:05d}-{seed}.png"
        if not path.exists():
            return path
        n += 1


def models(models: Optional[Path] = typer.Option(None, "--models"), as_json: bool = typer.Option(False, "--json")) -> None:
    """List the model catalog with descriptions."""
    from ..engine import Catalog

    catalog = Catalog(models or default_models_dir())
    entries = catalog.list()
    if as_json:
        out.print_json(json.dumps([m.to_dict() for m in entries]))
        return
    table = Table("name", "architecture", "size", "cost", "description")
    for m in entries:
        table.add_row(m.name, m.architecture, f"{m.native_size}px", str(m.cost), m.description)
    out.print(table)


def styles() -> None:
    """List the style presets."""
    from ..prompts import list_styles

    table = Table("name", "description", "adds")
    for s in list_styles():
        table.add_row(s.name, s.description, s.positive.replace("{prompt}", "…"))
    out.print(table)


def info(image: Path = typer.Argument(..., help="A PNG made by the studio, AUTOMATIC1111 or ComfyUI.")) -> None:
    """Print the generation settings stored in an image."""
    from ..store.metadata import read_parameters

    if not image.is_file():
        fail(f"file not found: {image}")
    try:
        text = read_parameters(image)
    except Exception as err:  # noqa: BLE001
        fail(f"{image} could not be read as an image ({err})")
    if not text:
        fail(f"{image} holds no generation settings", 1)
    # plain write: the infotext's lines must not be wrapped at the console width
    sys.stdout.write(text.rstrip("\n") + "\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
