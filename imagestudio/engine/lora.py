"""LoRA: AUTOMATIC1111's `<lora:name:weight>` prompt syntax, files from
`<models>/Lora`, loaded with diffusers' `load_lora_weights` (peft) for one
generation and unloaded afterwards, so the cached pipeline stays clean.

Diffusers converts kohya/A1111-style LoRA files as well as its own format."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from ..errors import ModelLoadError, ModelNotFound

LORA_DIRS = ("Lora", "LoRA", "loras")
LORA_TAG = re.compile(r"<lora:([^:<>]+)(?::\s*([-+]?(?:\d+\.?\d*|\.\d+)))?\s*>", re.IGNORECASE)


def extract_loras(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """(prompt without the tags, [(name, weight)]); the weight defaults to 1."""
    loras = [(name.strip(), float(weight) if weight else 1.0) for name, weight in LORA_TAG.findall(prompt)]
    text = LORA_TAG.sub(" ", prompt)
    text = re.sub(r"\s*,(\s*,)+", ",", text)  # "a, <lora:x>, b" -> "a, b"
    text = re.sub(r"[ \t]{2,}", " ", text).strip().strip(",").strip()
    return text, loras


def find_loras(models_dir: Optional[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if not models_dir:
        return found
    for sub in LORA_DIRS:
        folder = Path(models_dir) / sub
        if folder.is_dir():
            for entry in sorted(folder.rglob("*.safetensors")):
                found.setdefault(entry.stem, entry)
    return found


def find_lora(models_dir: Optional[Path], name: str) -> Path:
    loras = find_loras(models_dir)
    if name not in loras:
        where = f"{Path(models_dir) / 'Lora'}" if models_dir else "(no models folder)"
        raise ModelNotFound(f"unknown LoRA {name!r} in {where}; installed: {', '.join(loras) or 'none'}")
    return loras[name]


def _adapter_name(index: int, name: str) -> str:
    return f"lora{index}_" + re.sub(r"\W", "_", name)


@contextmanager
def applied(pipe, loras: list[tuple[str, float]], models_dir: Optional[Path]) -> Iterator[None]:
    """Load the LoRAs into `pipe` (its UNet and text encoder, shared by every
    mode's pipeline) with their weights; unload them on the way out."""
    if not loras:
        yield
        return
    paths = [find_lora(models_dir, name) for name, _ in loras]  # fail before touching the pipe
    names = []
    try:
        for i, ((name, _), path) in enumerate(zip(loras, paths)):
            adapter = _adapter_name(i, name)
            try:
                pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter)
            except Exception as err:  # diffusers/peft raise many types for foreign files
                raise ModelLoadError(f"could not load LoRA {name!r} from {path.name}: {err}") from err
            if not any(adapter in found for found in pipe.get_list_adapters().values()):
                raise ModelLoadError(f"could not load LoRA {name!r} from {path.name}: it holds no LoRA weights "
                                     "for this model's UNet or text encoder")
            names.append(adapter)
        pipe.set_adapters(names, adapter_weights=[weight for _, weight in loras])
        yield
    finally:
        # Also after a failed load, which may have injected part of a file.
        pipe.unload_lora_weights()
