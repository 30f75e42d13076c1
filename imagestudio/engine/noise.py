"""Initial noise: per-image seeds and variation seeds, A1111-compatible in spirit.

Noise is drawn on the CPU from a seeded generator, so a seed gives the same
image on any device; image i of a batch uses seed + i."""

from __future__ import annotations

import torch


def seeded_noise(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    gen = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=gen, dtype=torch.float32)


def slerp(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation; t=0 returns `a` itself (bit-exact original)."""
    if t <= 0:
        return a
    if t >= 1:
        return b
    a_n = a / a.norm()
    b_n = b / b.norm()
    dot = (a_n * b_n).sum().clamp(-1.0, 1.0)
    if dot.abs() > 0.9995:
        return (1 - t) * a + t * b
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def initial_latents(seeds: list[int], shape: tuple[int, int, int], variation_seed: int | None = None,
                    variation_strength: float = 0.0) -> torch.Tensor:
    """(len(seeds), C, H, W) noise; with a variation seed, slerped toward it."""
    out = []
    for i, seed in enumerate(seeds):
        noise = seeded_noise(seed, (1, *shape))
        if variation_seed is not None and variation_strength > 0:
            noise = slerp(variation_strength, noise, seeded_noise(variation_seed + i, (1, *shape)))
        out.append(noise)
    return torch.cat(out)


def generators(seeds: list[int], device: str) -> list[torch.Generator]:
    """Per-image generators for the sampler's own noise (ancestral steps, img2img)."""
    dev = "cpu" if device == "mps" else device
    return [torch.Generator(dev).manual_seed(int(s)) for s in seeds]
