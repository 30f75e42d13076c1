"""The model catalog: the embedded default plus every model found in a models
folder, in the AUTOMATIC1111/ComfyUI layout (models/Stable-diffusion,
models/checkpoints) or as diffusers folders.

Scanning only reads small JSON files and safetensors headers; weights are
loaded later, by the pipeline cache, when a model is first used. A scan is
kept until the models folder changes: every call compares the modification
times of the folder, its model subfolders and their entries (a few stat
calls), so a newly dropped model appears at the next call without reading
every card and header again. Weight hashes are computed once per
(path, mtime, size)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Optional

from ..errors import ModelNotFound

SUBFOLDERS = ("", "Stable-diffusion", "checkpoints", "diffusers")
PICKLED_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

# Base credit cost of one image at the model's native size, by architecture.
BASE_COST = {"embedded": 1, "sd15": 2, "sd2": 2, "sdxl": 4, "unknown": 2}
NATIVE = {"sd15": 512, "sd2": 768, "sdxl": 1024}
DESCRIBE = {
    "sd15": "Stable Diffusion 1.x model",
    "sd2": "Stable Diffusion 2.x model",
    "sdxl": "Stable Diffusion XL model",
    "unknown": "Diffusion model",
}


@dataclass
class ModelInfo:
    name: str
    architecture: str  # embedded, sd15, sd2, sdxl
    description: str
    native_size: int
    source: str  # embedded, diffusers, single_file, pickled
    path: str
    default_steps: int = 20
    default_guidance: float = 7.0
    default_sampler: str = "Euler a"
    cost: int = 2
    inpainting: bool = False  # a 9-channel inpainting UNet
    #: single-file models: the diffusers config folder used to build them
    config: Optional[str] = None
    can_draw: dict = field(default_factory=dict)
    #: read regions from place words in prompts by default (request.auto_regions None)
    auto_regions: bool = False

    @property
    def min_side(self) -> int:
        return 64

    @property
    def max_side(self) -> int:
        return max(256, min(2048, self.native_size * 4))

    @property
    def hash(self) -> str:
        """AUTOMATIC1111's short 'Model hash' (first 10 hex of sha256)."""
        return weights_hash(self.path)

    @property
    def sha256(self) -> str:
        """Full sha256 of the weights (A1111's sd-models 'sha256')."""
        return weights_sha256(self.path)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(min_side=self.min_side, max_side=self.max_side)
        return data


class Catalog:
    def __init__(self, models_dir: Optional[Path | str] = None, include_embedded: bool = True):
        self.models_dir = Path(models_dir) if models_dir else None
        self.include_embedded = include_embedded
        self._lock = threading.Lock()
        self._scan_key: Optional[tuple] = None
        self._scanned: list[ModelInfo] = []

    def list(self) -> list[ModelInfo]:
        models: list[ModelInfo] = []
        if self.include_embedded:
            embedded = embedded_model()
            if embedded:
                models.append(embedded)
        if self.models_dir and self.models_dir.is_dir():
            seen = {m.name for m in models}
            for info in self._scan():
                if info.name in seen:
                    # a card naming itself like a model already listed (a retrained copy of
                    # the embedded model: its exported card says "embedded") is listed under
                    # its own folder or file name instead of being hidden
                    own = Path(info.path).name if info.source == "diffusers" else Path(info.path).stem
                    if own in seen:
                        continue
                    info = replace(info, name=own)
                seen.add(info.name)
                models.append(info)
        return models

    def refresh(self) -> None:
        """Forget the cached scan: the next call reads the models folder again."""
        with self._lock:
            self._scan_key = None

    def _scan(self) -> list[ModelInfo]:
        # The key is taken before scanning: a change during the scan gives a
        # new key next time, so it is never missed.
        key = folder_signature(self.models_dir)
        with self._lock:
            if key != self._scan_key:
                self._scanned = scan_models(self.models_dir)
                self._scan_key = key
            return list(self._scanned)

    def default(self) -> ModelInfo:
        models = self.list()
        if not models:
            raise ModelNotFound(
                "no model is installed: the embedded model is missing and "
                f"no models were found in {self.models_dir or '(no models folder)'}"
            )
        return models[0]

    def get(self, name: Optional[str]) -> ModelInfo:
        if not name:
            return self.default()
        models = self.list()
        for info in models:
            if name in (info.name, Path(info.path).name):
                return info
        # A1111 clients send "name [hash]" as the checkpoint title.
        base = name.split(" [")[0]
        for info in models:
            if base in (info.name, Path(info.path).stem):
                return info
        raise ModelNotFound(
            f"unknown model {name!r}; installed: {', '.join(m.name for m in models) or 'none'}"
        )


_EMBEDDED_WEIGHTS = Path(__file__).resolve().parent.parent / "embedded" / "weights"


def embedded_model() -> Optional[ModelInfo]:
    weights = _EMBEDDED_WEIGHTS
    card_path = weights / "studio.json"
    try:
        key = (_stat_key(weights / "model_index.json"), _stat_key(card_path))
    except OSError:
        return None
    return _embedded_info(str(weights), key)


@lru_cache(maxsize=4)
def _embedded_info(folder: str, key: tuple) -> ModelInfo:
    weights = Path(folder)
    card = json.loads((weights / "studio.json").read_text())
    return ModelInfo(
        name=card.get("name", "embedded"),
        architecture="embedded",
        description=card.get("description", "The small model that ships with Image Studio."),
        native_size=int(card.get("native_size", 128)),
        source="embedded",
        path=str(weights),
        default_steps=int(card.get("default_steps", 20)),
        default_guidance=float(card.get("default_guidance", 4.0)),
        default_sampler=card.get("default_sampler", "DPM++ 2M"),
        cost=BASE_COST["embedded"],
        can_draw=card.get("can_draw", {}),
        auto_regions=bool(card.get("auto_regions", False)),
    )


def _stat_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def folder_signature(root: Path) -> tuple:
    """What a scan depends on, cheaply: the modification time of the models
    folder, of each model subfolder (and configs/), and of every entry in them
    (a diffusers folder's own mtime changes when files appear in it; its
    model_index.json and studio.json are checked too)."""
    parts: list = []
    folders = [root / sub if sub else root for sub in SUBFOLDERS] + [root / "configs"]
    for folder in folders:
        try:
            parts.append((str(folder), folder.stat().st_mtime_ns))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            parts.append((str(folder), None))
            continue
        for entry in entries:
            try:
                st = entry.stat()
            except OSError:
                continue
            parts.append((entry.name, st.st_mtime_ns, st.st_size))
            if entry.is_dir():
                for inner in ("model_index.json", "studio.json"):
                    try:
                        parts.append((inner, *_stat_key(Path(entry.path) / inner)))
                    except OSError:
                        pass
    return tuple(parts)


def scan_models(root: Path) -> list[ModelInfo]:
    found: list[ModelInfo] = []
    for sub in SUBFOLDERS:
        folder = root / sub if sub else root
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir() and (entry / "model_index.json").exists():
                found.append(_describe_diffusers(entry))
            elif entry.is_file() and entry.suffix == ".safetensors":
                found.append(_with_config(_describe_single_file(entry), root))
            elif entry.is_file() and entry.suffix in PICKLED_SUFFIXES and sub:
                found.append(_with_config(_describe_pickled(entry), root))
    return found


SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"


def _with_config(info: ModelInfo, root: Path) -> ModelInfo:
    """Single files carry weights only. Their configuration comes from, in
    order: `"config"` in the model's .json card, `<models>/configs/<arch>/`,
    or the folders shipped with the studio (SD 1.x)."""
    card = _card(Path(info.path)).get("config")
    for candidate in (card and (root / card), root / "configs" / info.architecture,
                      SHIPPED_CONFIGS / info.architecture):
        if candidate and (Path(candidate) / "model_index.json").exists():
            info.config = str(candidate)
            break
    return info


def _card(path: Path) -> dict:
    """Optional studio.json next to / inside a model: name, description, defaults."""
    card = (path / "studio.json") if path.is_dir() else path.with_suffix(".json")
    try:
        return json.loads(card.read_text()) if card.exists() else {}
    except (OSError, ValueError):
        return {}


def _describe_diffusers(folder: Path) -> ModelInfo:
    index = json.loads((folder / "model_index.json").read_text())
    cls = index.get("_class_name", "")
    unet_cfg = _json(folder / "unet" / "config.json")
    vae_cfg = _json(folder / "vae" / "config.json")
    if "XL" in cls:
        arch = "sdxl"
    elif unet_cfg.get("cross_attention_dim") == 1024:
        arch = "sd2"
    else:
        arch = "sd15"
    scale = 2 ** (len(vae_cfg.get("block_out_channels", [0, 0, 0, 0])) - 1)
    sample = unet_cfg.get("sample_size", 64)
    if isinstance(sample, (list, tuple)):
        sample = sample[0]
    native = int(sample) * scale
    return _info(folder.name, arch, native, "diffusers", folder, unet_cfg.get("in_channels") == 9, _card(folder))


def _describe_single_file(path: Path) -> ModelInfo:
    shapes = safetensors_shapes(path)
    keys = shapes.keys()
    if any(k.startswith("conditioner.embedders.1") for k in keys):
        arch = "sdxl"
    elif any(k.startswith("cond_stage_model.model.") for k in keys):
        arch = "sd2"
    elif any(k.startswith("model.diffusion_model.") for k in keys):
        arch = "sd15"
    else:
        arch = "unknown"
    first_conv = shapes.get("model.diffusion_model.input_blocks.0.0.weight")
    inpainting = bool(first_conv and len(first_conv) > 1 and first_conv[1] == 9)
    return _info(path.stem, arch, NATIVE.get(arch, 512), "single_file", path, inpainting, _card(path))


def _describe_pickled(path: Path) -> ModelInfo:
    # Architecture is only known after the restricted load; assume SD 1.x.
    return _info(path.stem, "sd15", 512, "pickled", path, False, _card(path))


def _info(name, arch, native, source, path, inpainting, card) -> ModelInfo:
    kind = DESCRIBE.get(arch, DESCRIBE["unknown"])
    return ModelInfo(
        name=card.get("name", name),
        architecture=arch,
        description=card.get("description", f"{kind}{' (inpainting)' if inpainting else ''}, {source.replace('_', ' ')}: {Path(path).name}"),
        native_size=int(card.get("native_size", native)),
        source=source,
        path=str(path),
        default_steps=int(card.get("default_steps", 20)),
        default_guidance=float(card.get("default_guidance", 7.0)),
        default_sampler=card.get("default_sampler", "Euler a"),
        cost=int(card.get("cost", BASE_COST.get(arch, 2))),
        inpainting=inpainting,
        auto_regions=bool(card.get("auto_regions", False)),
    )


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors header, without reading the weights."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        if length > 100 * 1024 * 1024:
            return {}
        header = json.loads(fh.read(length))
    return {k: v.get("shape", []) for k, v in header.items() if k != "__metadata__"}


@lru_cache(maxsize=1024)
def _hash_file(path: str, mtime: float, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_hash(path: str) -> str:
    """AUTOMATIC1111's short model hash: the first 10 hex digits of the sha256."""
    return weights_sha256(path)[:10]


def weights_sha256(path: str) -> str:
    """sha256 of the weights file (of a diffusers folder: its UNet's weights)."""
    p = Path(path)
    if p.is_dir():
        candidates = sorted((p / "unet").glob("*.safetensors")) or sorted((p / "unet").glob("*"))
        if not candidates:
            return "0" * 64
        p = candidates[0]
    stat = p.stat()
    return _hash_file(str(p), stat.st_mtime, stat.st_size)
