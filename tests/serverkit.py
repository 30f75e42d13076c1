"""Start a real Image Studio server for tests and benchmarks.

`start_server` runs uvicorn in a background thread on a free loopback port
(shared engine => the tiny pipelines load once per test session);
`spawn_server` runs `python -m imagestudio serve` as a subprocess (for tests
that kill and restart it). Both talk real HTTP.

    models = make_models_dir(tmp / "models")          # tiny txt2img + inpaint pipelines
    with start_server(tmp / "data", models) as server:
        client = server.client()                        # httpx.Client at server.url
        job = client.post("/api/jobs", json={"prompt": "a red circle", "model": "tiny"}).json()
        done = wait_job(client, job["id"])
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Iterator, Optional

import httpx

ROOT = Path(__file__).resolve().parent.parent

#: Small and fast: what tests put in their requests.
TINY = {"model": "tiny", "width": 64, "height": 64, "steps": 2}
TINY_CARD = {"native_size": 64, "default_steps": 2, "cost": 1,
             "description": "Tiny random-weight test pipeline"}


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_BUILT: dict[str, Path] = {}


def make_models_dir(folder: Path, *, inpaint: bool = True) -> Path:
    """A models folder in the A1111 layout holding `tiny` (and `tiny-inpaint`),
    each with a studio.json card: native 64 px, 2 steps, 1 credit per image.
    Built once per process and copied."""
    sys.path.insert(0, str(ROOT / "tests")) if str(ROOT / "tests") not in sys.path else None
    from tiny import save_tiny_pipeline

    folder = Path(folder)
    target = folder / "Stable-diffusion"
    target.mkdir(parents=True, exist_ok=True)
    names = [("tiny", False)] + ([("tiny-inpaint", True)] if inpaint else [])
    for name, is_inpaint in names:
        if name not in _BUILT:
            import tempfile

            built = Path(tempfile.mkdtemp(prefix="tinypipe-")) / name
            save_tiny_pipeline(built, inpaint=is_inpaint)
            (built / "studio.json").write_text(json.dumps(TINY_CARD))
            _BUILT[name] = built
        if not (target / name).exists():
            shutil.copytree(_BUILT[name], target / name)
    return folder


class RunningServer:
    def __init__(self, url: str, settings, app=None, thread=None, uvicorn_server=None, process=None) -> None:
        self.url = url
        self.settings = settings
        self.app = app
        self._thread = thread
        self._server = uvicorn_server
        self.process = process

    @property
    def service(self):
        return self.app.state.service if self.app is not None else None

    def client(self, key: Optional[str] = None, timeout: float = 60) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def add_user(self, name: str, credits: int) -> str:
        """Create a user in this server's database; returns the API key."""
        from imagestudio.store import accounts
        from imagestudio.store.db import Database

        db = Database(self.settings.database_url)
        try:
            db.create_all()
            return accounts.add_user(db, name, credits)[1]
        finally:
            db.dispose()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=60)
            self._server = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Kill a spawned server at once (no shutdown code runs: a crash)."""
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _wait_ready(url: str, timeout: float, process=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server at {url} did not start within {timeout}s")


def start_server(data_dir: Path, models_dir: Path, *, engine: Any = None, catalog: Any = None,
                 timeout: float = 120, **settings: Any) -> RunningServer:
    """uvicorn in a thread. `settings` are Settings fields (shared=True,
    db_url=..., redis_url=..., queue_name=..., max_body_bytes=...)."""
    import uvicorn

    from imagestudio.server.app import create_app
    from imagestudio.server.settings import Settings

    port = free_port()
    cfg = Settings(data_dir=Path(data_dir), models_dir=Path(models_dir), host="127.0.0.1", port=port, **settings)
    app = create_app(cfg, engine=engine, catalog=catalog)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    running = RunningServer(url, cfg, app=app, thread=thread, uvicorn_server=server)
    try:
        _wait_ready(url, timeout)
    except BaseException:
        running.stop()
        raise
    return running


def spawn_server(data_dir: Path, models_dir: Path, *, args: tuple[str, ...] = (), timeout: float = 180,
                 log_path: Optional[Path] = None) -> RunningServer:
    """`python -m imagestudio serve` in a subprocess (SIGINT stops it, kill() crashes it)."""
    from imagestudio.server.settings import Settings

    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    log = open(log_path or Path(data_dir).with_suffix(".log"), "ab")
    cmd = [sys.executable, "-m", "imagestudio", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data", str(data_dir), "--models", str(models_dir), *args]
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    running = RunningServer(url, Settings(data_dir=Path(data_dir), models_dir=Path(models_dir), port=port),
                            process=process)
    try:
        _wait_ready(url, timeout, process)
    except BaseException:
        running.stop()
        raise
    return running


def wait_job(client: httpx.Client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['state']} after {timeout}s")
        time.sleep(0.05)


def sse_events(client: httpx.Client, job_id: str, timeout: float = 120) -> Iterator[tuple[str, dict]]:
    """(event, data) pairs from /api/jobs/{id}/events until the stream ends."""
    with client.stream("GET", f"/api/jobs/{job_id}/events", timeout=timeout) as response:
        response.raise_for_status()
        event, data = "message", []
        for line in response.iter_lines():
            if line == "":
                if data:
                    yield event, json.loads("\n".join(data))
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
