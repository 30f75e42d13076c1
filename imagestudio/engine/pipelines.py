"""Loading models and keeping them in memory.

One base pipeline per model is loaded; the img2img and inpaint pipelines are
built from its components with `from_pipe`, so all modes share one UNet, VAE
and text encoder in memory."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

from ..errors import ModelLoadError, UnsafeCheckpoint
from .catalog import ModelInfo

log = logging.getLogger(__name__)

def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class PipelineCache:
    """LRU of loaded models; each entry holds the pipelines of every mode."""

    def __init__(self, max_models: int = 1, device: str | None = None):
        self.max_models = max_models
        self.device = device or default_device()
        self._models: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, info: ModelInfo, kind: str = "txt2img"):
        """kind: txt2img, img2img or inpaint."""
        key = f"{info.source}:{info.path}"
        with self._lock:
            entry = self._models.get(key)
            if entry is None:
                pipe = self._load(info)
                # Samplers are built from the model's own scheduler config,
                # kept apart from the pipelines whose scheduler gets swapped.
                entry = {"txt2img": pipe, "scheduler_config": dict(pipe.scheduler.config)}
                self._models[key] = entry
                while len(self._models) > self.max_models:
                    evicted, _ = self._models.popitem(last=False)
                    log.info("unloaded %s", evicted)
            self._models.move_to_end(key)
            if kind not in entry:
                entry[kind] = _derive(entry["txt2img"], kind)
            return entry[kind]

    def get_control(self, info: ModelInfo, controlnet: Path, mode: str = "txt2img"):
        """The txt2img or img2img ControlNet pipeline for `controlnet` (a
        diffusers folder), sharing the model's components; cached beside its
        modes (one ControlNet module shared by both)."""
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

        from .control import check_fits, load_controlnet

        kind = f"control:{mode}:{controlnet}"
        with self._lock:
            base = self.get(info, "txt2img")
            entry = self._models[f"{info.source}:{info.path}"]
            if kind not in entry:
                other = entry.get(f"control:{'img2img' if mode == 'txt2img' else 'txt2img'}:{controlnet}")
                if other is not None:  # checked when it was loaded for the other mode
                    net = other.controlnet
                else:
                    net = load_controlnet(Path(controlnet), base.unet.dtype)
                    check_fits(net, base.unet, Path(controlnet).name)  # before it takes device memory
                    net = net.to(self.device)
                auto = AutoPipelineForText2Image if mode == "txt2img" else AutoPipelineForImage2Image
                pipe = auto.from_pipe(base, controlnet=net)
                pipe.set_progress_bar_config(disable=True)
                entry[kind] = pipe
            return entry[kind]

    def scheduler_config(self, info: ModelInfo) -> dict:
        self.get(info)
        return self._models[f"{info.source}:{info.path}"]["scheduler_config"]

    def loaded(self) -> list[str]:
        return list(self._models)

    def _load(self, info: ModelInfo):
        import torch
        from diffusers import AutoPipelineForText2Image

        dtype = torch.float16 if self.device == "cuda" else torch.float32
        extra = {} if info.architecture == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
        try:
            if info.source in ("embedded", "diffusers"):
                folder = _embedded_dir() if info.source == "embedded" else info.path
                pipe = AutoPipelineForText2Image.from_pretrained(folder, dtype=dtype, **extra)
            elif info.source in ("single_file", "pickled"):
                pipe = _load_single_file(info, dtype, extra)
            else:
                raise ModelLoadError(f"cannot load model source {info.source!r}")
        except (ModelLoadError, UnsafeCheckpoint):
            raise
        except Exception as err:
            raise ModelLoadError(f"could not load model {info.name!r} from {info.path}: {err}") from err
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(self.device)


def _embedded_dir() -> str:
    from ..embedded import model_dir

    return str(model_dir())


def _derive(base, kind: str):
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    cls = {"img2img": AutoPipelineForImage2Image, "inpaint": AutoPipelineForInpainting}[kind]
    pipe = cls.from_pipe(base)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def restricted_state_dict(path: Path) -> dict:
    """Read a pickled checkpoint with torch's restricted unpickler only."""
    import pickle

    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsafeCheckpoint(
            f"refused to load {path.name}: it needs more than plain tensors to unpickle "
            f"({first}). Convert it to .safetensors with a tool you trust."
        ) from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise UnsafeCheckpoint(f"refused to load {path.name}: it holds no state dict")
    return data


def _load_single_file(info: ModelInfo, dtype, extra: dict):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    path = Path(info.path)
    if info.source == "pickled":
        # Never hand a pickle to another loader: re-save the checked tensors.
        from safetensors.torch import save_file

        tensors = {k: v.contiguous() for k, v in restricted_state_dict(path).items() if hasattr(v, "contiguous")}
        safe = path.parent / ".cache" / (path.stem + ".safetensors")
        safe.parent.mkdir(exist_ok=True)
        save_file(tensors, str(safe))
        path = safe
    if not info.config:
        raise ModelLoadError(
            f"{path.name}: no configuration for a single-file {info.architecture} checkpoint; put a diffusers folder "
            f"of that architecture (configs only) at <models>/configs/{info.architecture}/, or use a diffusers folder"
        )
    config = info.config
    cls = StableDiffusionXLPipeline if info.architecture == "sdxl" else StableDiffusionPipeline
    return cls.from_single_file(str(path), config=str(config), dtype=dtype, **extra)
