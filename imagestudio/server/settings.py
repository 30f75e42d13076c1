"""Server settings: where data and models live, which database and queue to
use, whether the server is shared (API keys, credits) and its limits."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def default_data_dir() -> Path:
    from ..paths import data_dir

    return data_dir()


@dataclass
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    #: None: $IMAGESTUDIO_MODELS, else <data_dir>/models.
    models_dir: Optional[Path] = None
    #: None: SQLite at <data_dir>/studio.db. Else e.g. postgresql+psycopg://user@host/db
    db_url: Optional[str] = None
    #: None: SqliteHuey at <data_dir>/queue.db. Else e.g. redis://127.0.0.1:6379/0
    redis_url: Optional[str] = None
    #: Queue name (lets several studios share one Redis).
    queue_name: str = "imagestudio"
    #: Shared mode: API keys and credits. Binding a non-loopback host implies it.
    shared: bool = False
    host: str = "127.0.0.1"
    port: int = 7860
    #: Run the job worker inside the server process.
    worker: bool = True
    workers: int = 1
    #: Let requests name image files on the server's disk. Off: over HTTP an
    #: image is uploaded, sent as base64, or referenced as image:<id>.
    allow_paths: bool = False
    #: Threads for blocking request handlers (a blocking A1111 call holds one).
    thread_limit: int = 200
    #: Whole request body (JSON with base64 images included).
    max_body_bytes: int = 40 * 1024 * 1024
    #: One uploaded image (multipart file or decoded base64).
    max_upload_bytes: int = 20 * 1024 * 1024

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        if self.models_dir is None:
            self.models_dir = Path(os.environ["IMAGESTUDIO_MODELS"]) if os.environ.get("IMAGESTUDIO_MODELS") \
                else self.data_dir / "models"
        self.models_dir = Path(self.models_dir).expanduser()
        if self.host not in LOOPBACK:
            self.shared = True

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'studio.db'}"
