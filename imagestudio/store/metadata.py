"""Settings carried inside every PNG.

Two text chunks:
- `parameters`: AUTOMATIC1111's infotext, which A1111, ComfyUI, Civitai and
  most image viewers read (final prompt, negative prompt, then one line of
  `Key: value` pairs);
- `imagestudio`: our exact request as JSON plus the image's index in its batch,
  which is what `imagestudio generate --from` re-runs to get identical pixels.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any, Optional, Union

from PIL import Image, PngImagePlugin

Source = Union[str, Path, bytes, Image.Image]

# A1111's own pattern for the key: value list (values may be quoted).
_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def _quote(value: Any) -> str:
    text = str(value)
    if "," in text or "\n" in text or ":" in text:
        return json.dumps(text)
    return text


def format_parameters(prompt: str, negative_prompt: str, fields: dict[str, Any]) -> str:
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields.items() if v is not None and v != ""))
    return "\n".join(lines)


def parse_parameters(text: str) -> dict[str, str]:
    """Infotext -> {'prompt', 'negative_prompt', 'Steps', 'Sampler', 'Seed', ...}."""
    lines = text.strip().split("\n")
    last = lines[-1] if lines else ""
    result: dict[str, str] = {}
    if len(_PAIR.findall(last)) >= 3:
        lines = lines[:-1]
        for key, value in _PAIR.findall(last):
            value = value.strip()
            if value.startswith('"') and value.endswith('"'):
                try:
                    value = json.loads(value)
                except ValueError:
                    value = value[1:-1]
            result[key.strip()] = value
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    result["prompt"] = "\n".join(prompt_lines).strip()
    result["negative_prompt"] = "\n".join(negative_lines).strip()
    return result


def save_png(image: Image.Image, path: Union[str, Path], parameters: str, request_json: Optional[str] = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", pnginfo=_pnginfo(parameters, request_json))
    return path


def png_bytes(image: Image.Image, parameters: str, request_json: Optional[str] = None) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=_pnginfo(parameters, request_json))
    return buf.getvalue()


def _pnginfo(parameters: str, request_json: Optional[str]) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    # iTXt keeps non-Latin-1 prompts intact (A1111 reads both tEXt and iTXt).
    info.add_itxt("parameters", parameters)
    if request_json:
        info.add_itxt("imagestudio", request_json)
    return info


def _text_chunks(src: Source) -> dict[str, str]:
    if isinstance(src, Image.Image):
        return dict(getattr(src, "text", {}) or src.info)
    data = src if isinstance(src, bytes) else Path(src).read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return {k: v for k, v in {**img.info, **getattr(img, "text", {})}.items() if isinstance(v, str)}


def read_parameters(src: Source) -> Optional[str]:
    return _text_chunks(src).get("parameters")


def read_request(src: Source) -> Optional[dict]:
    """Our own chunk: {'request': {...}, 'index': i} or None."""
    raw = _text_chunks(src).get("imagestudio")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
