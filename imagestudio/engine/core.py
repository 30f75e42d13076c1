"""The Engine: turns a GenerationRequest into images.

`prepare` resolves a request without loading anything (seed drawn, size,
steps, sampler and guidance filled from the model's defaults) so callers can
validate and price it; `generate` runs it. Each mode is one small function
below; all share prompt encoding, noise, progress and metadata."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Optional

from .. import __version__
from ..errors import Cancelled, RequestError
from ..prompts.regions import describe as describe_regions
from ..request import GenerationRequest, Mode, load_image, size_for_aspect
from ..store.metadata import format_parameters, parse_parameters, read_parameters
from . import images as px
from .catalog import Catalog, ModelInfo
from .noise import generators, initial_latents
from .pipelines import PipelineCache
from .samplers import canonical_sampler, make_scheduler, sampler_names
from .types import CancelToken, GeneratedImage, GenerationResult, Progress, ProgressCallback

#: Decode a preview every this many steps (small models only: it costs a VAE pass).
PREVIEW_EVERY = 5
PREVIEW_MAX_LATENT = 48 * 48


class Engine:
    def __init__(self, catalog: Optional[Catalog] = None, cache: Optional[PipelineCache] = None):
        self.catalog = catalog or Catalog()
        self.cache = cache or PipelineCache()
        # diffusers pipelines hold per-call state (scheduler, _num_timesteps):
        # one generation at a time per engine.
        self._lock = threading.Lock()

    # --- lookups ---------------------------------------------------------

    def samplers(self) -> list[str]:
        return sampler_names()

    def model(self, name: Optional[str]) -> ModelInfo:
        return self.catalog.get(name)

    # --- resolution ------------------------------------------------------

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        if request.mode is Mode.upscale:
            return self._prepare_upscale(request)
        info = self.catalog.get(request.model)
        update: dict = {"model": info.name}
        update["sampler"] = canonical_sampler(request.sampler or info.default_sampler)
        update["steps"] = request.steps or info.default_steps
        update["guidance"] = info.default_guidance if request.guidance is None else request.guidance
        if request.auto_regions is None:
            update["auto_regions"] = info.auto_regions and not request.regions
        if request.style and request.style.lower() != "none":
            from ..prompts import get_style

            update["style"] = get_style(request.style).name
        width, height = self._size(request, info)
        update["width"], update["height"] = width, height
        update["aspect_ratio"] = None
        if request.hires_scale and request.hires_scale > 1:
            from .upscale import resolve_upscaler

            update["upscaler"] = resolve_upscaler(request.upscaler, self.catalog.models_dir)
            big = hires_size(width, height, request.hires_scale)
            if max(big) > info.max_side:
                raise RequestError(f"hires fix would make {big[0]}x{big[1]}; model {info.name} allows up to "
                                   f"{info.max_side} pixels per side")
        return request.model_copy(update=update).with_seed()

    def _prepare_upscale(self, request: GenerationRequest) -> GenerationRequest:
        """Upscale needs no diffusion model; width/height stay None (the
        output may exceed the generation limits) and the upscaler is checked."""
        from .upscale import resolve_upscaler, target_size

        init = load_image(request.init_image, what="init image")
        target_size(init.size, request.upscale_factor)
        name = resolve_upscaler(request.upscaler, self.catalog.models_dir)
        return request.model_copy(update={"upscaler": name, "count": 1}).with_seed()

    def _size(self, request: GenerationRequest, info: ModelInfo) -> tuple[int, int]:
        if request.width is not None:
            width, height = request.width, request.height
        elif request.aspect_ratio:
            width, height = size_for_aspect(request.aspect_ratio, info.native_size)
        elif request.init_image and request.mode is not Mode.txt2img:
            init = load_image(request.init_image, what="init image")
            width, height = px.fit_size(*init.size, info.max_side)
        else:
            width = height = max(info.native_size, info.min_side)
        for side, value in (("width", width), ("height", height)):
            if not info.min_side <= value <= info.max_side:
                raise RequestError(
                    f"{side} {value} is outside {info.min_side}-{info.max_side} pixels for model {info.name}"
                )
        if request.mode is Mode.outpaint:
            o = request.outpaint
            if max(width + o.left + o.right, height + o.top + o.bottom) > info.max_side:
                raise RequestError(
                    f"the outpainted canvas would exceed {info.max_side} pixels per side for model {info.name}"
                )
        return width, height

    # --- generation ------------------------------------------------------

    def generate(self, request: GenerationRequest, on_progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> GenerationResult:
        req = self.prepare(request)
        if req.mode is Mode.upscale:
            return self._upscale(req, on_progress, cancel)
        info = self.catalog.get(req.model)
        run = _Run(self, req, info, on_progress, cancel)
        with self._lock:
            started = time.perf_counter()
            pictures = run.execute()
            seconds = time.perf_counter() - started
        result = GenerationResult(request=req, info={"style": run.style, "model_hash": info.hash, "seconds": seconds})
        for i, (image, seed) in enumerate(zip(pictures, req.seeds())):
            drift = run.drifts[i].to_dict() if i < len(run.drifts) else None
            result.images.append(GeneratedImage(image=image, seed=seed, index=i,
                                                parameters=run.parameters(seed, i), drift=drift))
        return result

    def _upscale(self, req: GenerationRequest, on_progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> GenerationResult:
        """Upscale mode: no diffusion. The source's own settings (if any) are
        kept in the infotext with A1111's postprocess keys added. Progress
        counts tiles; a cancel takes effect between tiles."""
        from .upscale import upscale

        def on_tile(done: int, total: int) -> None:
            if cancel is not None:
                cancel.raise_if_cancelled()
            if on_progress is not None:
                on_progress(Progress(step=done, total=total))

        source = load_image(req.init_image, what="init image")
        started = time.perf_counter()
        with self._lock:
            if cancel is not None:
                cancel.raise_if_cancelled()
            image = upscale(px.to_rgb(source), req.upscale_factor, req.upscaler, self.catalog.models_dir,
                            on_tile=on_tile)
        seconds = time.perf_counter() - started
        previous = read_parameters(source)
        fields = {"Size": f"{image.width}x{image.height}", "Postprocess upscale by": req.upscale_factor,
                  "Postprocess upscaler": req.upscaler}
        if previous:
            parameters = previous.rstrip() + ", " + ", ".join(f"{k}: {v}" for k, v in fields.items())
        else:
            parameters = format_parameters("", "", {**fields, "Mode": "upscale", "Version": f"imagestudio {__version__}"})
        result = GenerationResult(request=req, info={"seconds": seconds, "upscaler": req.upscaler})
        result.images.append(GeneratedImage(image=image, seed=req.seed, index=0, parameters=parameters))
        return result


class _Run:
    """One request in flight: prompt handling, the mode call, progress."""

    def __init__(self, engine: Engine, req: GenerationRequest, info: ModelInfo,
                 on_progress: Optional[ProgressCallback], cancel: Optional[CancelToken]):
        self.engine, self.req, self.info = engine, req, info
        self.on_progress, self.cancel = on_progress, cancel
        self.style: Optional[str] = None
        self.prompt, self.negative = req.prompt, req.negative_prompt
        self.strength: Optional[float] = None
        self.drifts: list = []  # per image, img2img only (engine.keep.Drift)
        self.controlnet: Optional[str] = None  # name of the ControlNet used
        self.control_image = None  # the preprocessed control image
        self.encode_prompt: Optional[str] = None  # the prompt without <lora:...> tags
        self.loras: list[tuple[str, float]] = []
        self.regions: list = []  # request.Region, styled, or read from the prompt

    # prompt ---------------------------------------------------------------

    def _resolve_prompts(self):
        from ..prompts import apply_style, enhance_prompt

        prompt = self.req.prompt
        if self.req.mode is Mode.variation and not prompt and self.req.init_image:
            text = read_parameters(load_image(self.req.init_image, what="init image"))
            prompt = parse_parameters(text)["prompt"] if text else ""
        if self.req.enhance and prompt:
            prompt = enhance_prompt(prompt)
        styled = apply_style(self.req.style, prompt, self.req.negative_prompt)
        self.prompt, self.negative, self.style = styled.prompt, styled.negative, styled.style
        self._resolve_regions()

    def _resolve_regions(self) -> None:
        from ..prompts import apply_style
        from ..prompts.regions import auto_regions

        if self.req.regions:
            # each region gets the request's style words, as the whole prompt did
            self.regions = [r.model_copy(update={"prompt": apply_style(self.style, r.prompt, "").prompt})
                            for r in self.req.regions]
        elif self.req.auto_regions and self.req.mode is not Mode.outpaint:
            self.regions = auto_regions(self.prompt)

    def _regional_attention(self, pipe):
        """The cross-attention processor that draws the regions (None without regions)."""
        if not self.regions:
            return None
        from .lora import extract_loras
        from .regions import RegionalAttention

        embeddings = [self._encode(pipe, extract_loras(region.prompt)[0], "")[0] for region in self.regions]
        req = self.req
        width, height = req.width, req.height
        if req.mode is Mode.outpaint:
            o = req.outpaint
            width, height = width + o.left + o.right, height + o.top + o.bottom
        return RegionalAttention(embeddings, [r.box for r in self.regions], width / height, req.count)

    def _encode(self, pipe, prompt: str, negative: str) -> tuple:
        """(positive, negative[, pooled, negative pooled]) embeddings for this model's architecture."""
        from ..prompts import encode_prompts, encode_prompts_sdxl

        encode = encode_prompts_sdxl if self.info.architecture == "sdxl" else encode_prompts
        return encode(pipe, prompt, negative, device=pipe.device)

    def _prompt_kwargs(self, pipe) -> dict:
        """Weighted, chunked embeddings (A1111 syntax, no 77-token cut)."""
        n = self.req.count
        prompt = self.prompt if self.encode_prompt is None else self.encode_prompt
        if self.info.architecture == "sdxl":
            pos, neg, pooled, neg_pooled = self._encode(pipe, prompt, self.negative)
            return {"prompt_embeds": pos.repeat(n, 1, 1), "negative_prompt_embeds": neg.repeat(n, 1, 1),
                    "pooled_prompt_embeds": pooled.repeat(n, 1),
                    "negative_pooled_prompt_embeds": neg_pooled.repeat(n, 1)}
        pos, neg = self._encode(pipe, prompt, self.negative)
        return {"prompt_embeds": pos.repeat(n, 1, 1), "negative_prompt_embeds": neg.repeat(n, 1, 1)}

    # progress ---------------------------------------------------------------

    def _callback(self, pipe, step: int, timestep, kwargs: dict) -> dict:
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled("generation was cancelled")
        if self.on_progress is not None:
            total = getattr(pipe, "num_timesteps", None) or self.req.steps
            preview = None
            if (step + 1) % PREVIEW_EVERY == 0 and step + 1 < total:
                preview = _preview(pipe, kwargs.get("latents"))
            self.on_progress(Progress(step=step + 1, total=total, preview=preview))
        return {}

    def _common(self, pipe) -> dict:
        pipe.scheduler = make_scheduler(self.req.sampler, self.engine.cache.scheduler_config(self.info))
        kwargs = dict(
            num_inference_steps=self.req.steps,
            guidance_scale=self.req.guidance,
            generator=generators(self.req.seeds(), str(pipe.device.type)),
            callback_on_step_end=self._callback,
            callback_on_step_end_tensor_inputs=["latents"],
            output_type="pil",
        )
        kwargs.update(self._prompt_kwargs(pipe))
        return kwargs

    # modes ------------------------------------------------------------------

    def execute(self) -> list:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        self._resolve_prompts()
        from .lora import applied, extract_loras

        self.encode_prompt, self.loras = extract_loras(self.prompt)
        mode = self.req.mode
        if mode is Mode.variation:
            mode = Mode.img2img if self.req.init_image else Mode.txt2img
        run = {Mode.txt2img: self.txt2img, Mode.img2img: self.img2img,
               Mode.inpaint: self.inpaint, Mode.outpaint: self.outpaint}[mode]
        from .regions import regional

        # LoRAs and regions go into the shared UNet/text encoder for this call only.
        base = self.engine.cache.get(self.info, "txt2img") if (self.loras or self.regions) else None
        with applied(base if self.loras else None, self.loras, self.engine.catalog.models_dir):
            with regional(base.unet if base is not None else None, self._regional_attention(base)):
                return run()

    def txt2img(self) -> list:
        images = self._txt2img_pass()
        if self.req.hires_scale and self.req.hires_scale > 1:
            images = self._hires(images)
        return images

    def _hires(self, images: list) -> list:
        """Hires fix: upscale the first pass, then img2img at the larger size."""
        from .upscale import upscale

        size = hires_size(self.req.width, self.req.height, self.req.hires_scale)
        big = [upscale(image, 0, self.req.upscaler, self.engine.catalog.models_dir, size=size) for image in images]
        self.strength = self.req.hires_strength
        return self._img2img_pass(big, self.req.hires_strength, self.req.hires_steps or self.req.steps)

    def _txt2img_pass(self) -> list:
        req = self.req
        extra: dict = {}
        if req.control is not None:
            self._refuse_control_on_inpainting_model()
            pipe, extra = self._control()
        elif self.info.inpainting:
            # A 9-channel inpainting UNet also wants a mask and a masked image: draw
            # everything (white mask) over a blank (mid-grey) one, as A1111 does.
            pipe = self.engine.cache.get(self.info, "inpaint")
            blank = px.Image.new("RGB", (req.width, req.height), (127, 127, 127))
            extra = {"image": [blank] * req.count, "mask_image": [px.full_mask(blank.size)] * req.count,
                     "strength": 1.0}
        else:
            pipe = self.engine.cache.get(self.info, "txt2img")
        scale = pipe.vae_scale_factor
        shape = (pipe.unet.config.out_channels if hasattr(pipe, "unet") else 4, req.height // scale, req.width // scale)
        vseed = req.variation_seed if req.variation_strength > 0 else None
        latents = initial_latents(req.seeds(), shape, vseed, req.variation_strength)
        out = pipe(height=req.height, width=req.width, latents=latents.to(pipe.device, pipe.unet.dtype),
                   **self._common(pipe), **extra)
        return out.images

    def _refuse_control_on_inpainting_model(self) -> None:
        if self.info.inpainting:
            raise RequestError(f"model {self.info.name} is an inpainting model; structure control "
                                 "(ControlNet) needs an ordinary one")

    def _control(self, mode: str = "txt2img"):
        """The ControlNet pipeline and its arguments for `req.control`."""
        from .control import choose_controlnet, preprocess

        control = self.req.control
        name, path = choose_controlnet(self.engine.catalog.models_dir, control.type, control.model,
                                       self.info.architecture)
        self.controlnet = name
        pipe = self.engine.cache.get_control(self.info, path, mode)
        source = load_image(control.image, what="control image")
        image = preprocess(control.type, source, (self.req.width, self.req.height), control.preprocess)
        self.control_image = image
        # txt2img takes the control as `image`; img2img keeps `image` for the init.
        key = "image" if mode == "txt2img" else "control_image"
        return pipe, {key: [image] * self.req.count, "controlnet_conditioning_scale": control.weight,
                      "control_guidance_start": control.start, "control_guidance_end": control.end}

    def _init(self):
        image = px.to_rgb(load_image(self.req.init_image, what="init image"))
        return image

    def img2img(self) -> list:
        init = self._init()
        resized = init.resize((self.req.width, self.req.height), px.Image.LANCZOS)
        self.strength = self.req.strength
        images = self._img2img_pass([resized] * self.req.count, self.req.strength, self.req.steps,
                                    control=self.req.control is not None)
        if self.req.color_correction:
            images = [px.match_colors(image, resized) for image in images]
        return self._keep(resized, images)

    def _img2img_pass(self, images: list, strength: float, steps: int, control: bool = False) -> list:
        if strength <= 0:  # nothing to repaint
            return [image.copy() for image in images]
        extra: dict = {}
        if control:
            self._refuse_control_on_inpainting_model()
            pipe, extra = self._control("img2img")
        elif self.info.inpainting:
            # an inpainting UNet repaints the whole picture under a white mask
            pipe = self.engine.cache.get(self.info, "inpaint")
            extra = {"mask_image": [px.full_mask(image.size) for image in images],
                     "height": images[0].height, "width": images[0].width}
        else:
            pipe = self.engine.cache.get(self.info, "img2img")
        kwargs = self._common(pipe)
        kwargs.update(extra)
        kwargs["num_inference_steps"] = _steps_for(steps, strength)
        return pipe(image=images, strength=strength, **kwargs).images

    def _keep(self, source, images: list) -> list:
        """Paste kept pixels (keep mask, faces) back bit-exactly; measure drift."""
        from .keep import detect_faces, drift, keep_region, paste_kept

        mask = load_image(self.req.keep_mask, what="keep mask") if self.req.keep_mask else None
        faces = detect_faces(source) if self.req.keep_faces else []
        keep = keep_region(source.size, mask, faces)
        kept = [paste_kept(source, image, keep) for image in images]
        self.drifts = [drift(source, image, keep, len(faces)) for image in kept]
        return kept

    def inpaint(self) -> list:
        init = self._init()
        mask = px.binary_mask(load_image(self.req.mask, what="mask"), init.size)
        return self._repaint(init, mask, self.req.strength)

    def outpaint(self) -> list:
        init = self._init()
        o = self.req.outpaint
        # Keep the canvas a multiple of 8 by growing the right/bottom sides.
        w = init.width + o.left + o.right
        h = init.height + o.top + o.bottom
        canvas, mask = px.outpaint_canvas(init, o.left, o.right + (-w % 8), o.top, o.bottom + (-h % 8))
        # The new area starts from a smeared border: it must be fully re-noised.
        return self._repaint(canvas, mask, 1.0)

    def _repaint(self, image, mask, strength: float) -> list:
        self.strength = strength
        if strength <= 0:  # nothing to repaint
            return [image.copy() for _ in range(self.req.count)]
        pipe = self.engine.cache.get(self.info, "inpaint")
        width, height = px.fit_size(*image.size, self.info.max_side)
        work_mask = mask.resize((width, height), px.Image.NEAREST)
        if not self.info.inpainting:
            # A plain UNet repaints by blending latents: outside the mask they are the
            # original's, and the VAE encoder's receptive field carries the masked object's
            # colour into the cells just outside it, which the sampler then continues.
            # Letting it redraw two latent cells more frees that border; the composite
            # below still puts back every pixel outside the user's mask.
            work_mask = px.grow_mask(work_mask, 2 * pipe.vae_scale_factor)
        kwargs = self._common(pipe)
        kwargs["num_inference_steps"] = _steps_for(self.req.steps, strength)
        out = pipe(image=[image.resize((width, height), px.Image.LANCZOS)] * self.req.count,
                   mask_image=[work_mask] * self.req.count,
                   height=height, width=width, strength=strength, **kwargs)
        return [px.composite(image, generated, mask, self.req.mask_blur) for generated in out.images]

    # metadata ---------------------------------------------------------------

    def parameters(self, seed: int, index: int) -> str:
        req, info = self.req, self.info
        width, height = req.width, req.height
        fields = {
            "Steps": req.steps,
            "Sampler": req.sampler,
            "CFG scale": req.guidance,
            "Seed": seed,
            "Size": f"{width}x{height}",
            "Model hash": info.hash,
            "Model": info.name,
            "Denoising strength": self.strength,
            "Variation seed": req.variation_seed if req.variation_strength > 0 else None,
            "Variation seed strength": req.variation_strength if req.variation_strength > 0 else None,
            "Mask blur": req.mask_blur if req.mode in (Mode.inpaint, Mode.outpaint) else None,
            "Style": self.style,
            "Hires upscale": req.hires_scale if req.hires_scale and req.hires_scale > 1 else None,
            "Hires steps": (req.hires_steps or req.steps) if req.hires_scale and req.hires_scale > 1 else None,
            "Hires upscaler": req.upscaler if req.hires_scale and req.hires_scale > 1 else None,
            "Lora hashes": self._lora_hashes(),
            "ControlNet 0": self._control_text(),
            "Keep mask": "yes" if req.keep_mask else None,
            "Keep faces": "yes" if req.keep_faces else None,
            "Color correction": "yes" if req.color_correction else None,
            "Regions": describe_regions(self.regions) if self.regions else None,
            **(self.drifts[index].fields() if index < len(self.drifts) else {}),
            "Mode": req.mode.value,
            "Version": f"imagestudio {__version__}",
        }
        return format_parameters(self.prompt, self.negative, fields)

    def _control_text(self) -> Optional[str]:
        c = self.req.control
        if c is None or self.controlnet is None:
            return None
        return (f"Module: {c.type}, Model: {self.controlnet}, Weight: {c.weight}, "
                f"Guidance Start: {c.start}, Guidance End: {c.end}")

    def _lora_hashes(self) -> Optional[str]:
        if not self.loras:
            return None
        from .catalog import weights_hash
        from .lora import find_lora

        models = self.engine.catalog.models_dir
        return ", ".join(f"{name}: {weights_hash(str(find_lora(models, name)))}" for name, _ in self.loras)


def hires_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The hires-fix output size: `scale` times larger, rounded to multiples of 8."""
    return (max(8, int(round(width * scale / 8)) * 8), max(8, int(round(height * scale / 8)) * 8))


def _steps_for(steps: int, strength: float) -> int:
    """Steps to ask of an img2img or inpaint pipeline: diffusers runs int(steps * strength)
    of them and refuses zero, so a low strength with few steps still runs one."""
    return max(steps, math.ceil(1 / strength))


def request_json(request: GenerationRequest, index: int) -> str:
    """What goes into the PNG's `imagestudio` chunk: enough to re-run exactly."""
    return json.dumps({"request": request.model_dump(mode="json"), "index": index}, separators=(",", ":"))


def _preview(pipe, latents):
    if latents is None or latents.shape[-1] * latents.shape[-2] > PREVIEW_MAX_LATENT:
        return None
    import torch

    with torch.no_grad():
        sample = latents[:1] / pipe.vae.config.scaling_factor
        decoded = pipe.vae.decode(sample.to(pipe.vae.dtype)).sample
    return pipe.image_processor.postprocess(decoded, output_type="pil")[0]
