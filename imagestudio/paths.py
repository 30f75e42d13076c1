"""Where the studio keeps things by default. One place, so the CLI and the
server agree: $IMAGESTUDIO_DATA (default ./data) holds the database, images
and models/ (AUTOMATIC1111/ComfyUI layout: models/Stable-diffusion, models/checkpoints)."""

import os
from pathlib import Path


def data_dir() -> Path:
    return Path(os.environ.get("IMAGESTUDIO_DATA", "data")).expanduser()


def models_dir() -> Path:
    env = os.environ.get("IMAGESTUDIO_MODELS")
    return Path(env).expanduser() if env else data_dir() / "models"
