"""Plain data the engine hands out: progress events, results, cancel tokens.
Kept free of torch imports so the server and CLI can use them cheaply."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..errors import Cancelled
from ..request import GenerationRequest


@dataclass
class Progress:
    step: int  # steps done, 1-based
    total: int
    preview: Any = None  # optional small PIL image of the current estimate


ProgressCallback = Callable[[Progress], None]


class CancelToken:
    """Set from any thread; the engine checks it between sampling steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("generation was cancelled")


@dataclass
class GeneratedImage:
    image: Any  # PIL.Image.Image, RGB
    seed: int
    index: int
    parameters: str  # AUTOMATIC1111 infotext written into the PNG
    #: img2img only: SSIM drift between input and output (see engine.keep.Drift).
    drift: Optional[dict] = None


@dataclass
class GenerationResult:
    #: The request as actually run: seed drawn, size and style resolved.
    request: GenerationRequest
    images: list[GeneratedImage] = field(default_factory=list)
    #: Extra facts for metadata/APIs (chosen style, model hash, timings...).
    info: dict = field(default_factory=dict)
