"""JobService: the one way generations run on the server. Every API (native,
AUTOMATIC1111, OpenAI) submits a GenerationRequest here; the service checks it
(engine.prepare), charges its credits atomically, stores the job row and
enqueues the job id on huey. A worker thread claims the row, runs the engine,
writes progress into the row, saves the PNGs and image rows, and refunds the
credits if the job fails or is cancelled.

Job state lives in SQL so every reader (SSE, /sdapi/v1/progress, another
server sharing the database and a Redis queue) sees the same thing."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import and_, func, or_, select, update

from ..engine.core import hires_size
from ..engine.types import CancelToken, Progress
from ..errors import Cancelled, ImageError, RequestError, StudioError
from ..request import MAX_IMAGE_BYTES, GenerationRequest, Mode, load_image
from ..store import accounts
from ..store.accounts import Account
from ..store.db import Database, Image, Job, new_id
from .errors import ImageNotFound, JobNotFound, PayloadTooLarge, QueueUnavailable
from .queue import JobQueue

log = logging.getLogger(__name__)

TERMINAL = ("succeeded", "failed", "cancelled")
#: Every image reference a request can hold, by upload name -> where it sits
#: in the request (`control_image` is the nested `control.image`). All of them
#: are resolved and guarded the same way (uploads, image:<id>, base64; never a
#: server path from a client).
IMAGE_SLOTS: dict[str, tuple[str, ...]] = {
    "init_image": ("init_image",),
    "mask": ("mask",),
    "keep_mask": ("keep_mask",),
    "control_image": ("control", "image"),
}
#: Upload names (multipart file fields, `inputs` keys).
IMAGE_FIELDS = tuple(IMAGE_SLOTS)


def image_ref(request: GenerationRequest, slot: str) -> Optional[str]:
    """The reference held in an image slot of a request (None when unset)."""
    value: Any = request
    for part in IMAGE_SLOTS[slot]:
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def with_image_refs(request: GenerationRequest, refs: dict[str, Any]) -> GenerationRequest:
    """A copy of `request` with the given slots set (nested ones included)."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for slot, value in refs.items():
        path = IMAGE_SLOTS[slot]
        if len(path) == 1:
            top[path[0]] = value
        else:
            nested.setdefault(path[0], {})[path[1]] = value
    for name, values in nested.items():
        inner = getattr(request, name)
        if inner is not None:
            top[name] = inner.model_copy(update=values)
    return request.model_copy(update=top) if top else request


def _json_image_ref(data: dict, slot: str) -> Any:
    value: Any = data
    for part in IMAGE_SLOTS[slot]:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _set_json_image_ref(data: dict, slot: str, value: Any) -> None:
    *parents, last = IMAGE_SLOTS[slot]
    target: Any = data
    for part in parents:
        target = target.get(part) if isinstance(target, dict) else None
    if isinstance(target, dict):
        target[last] = value
PREVIEW_SIDE = 128
PREVIEW_EVERY_S = 0.4


@dataclass
class ImageView:
    id: str
    url: str
    path: str
    seed: int
    width: int
    height: int
    parameters: str
    index: int = 0
    job_id: Optional[str] = None
    parent_id: Optional[str] = None
    model: Optional[str] = None
    style: Optional[str] = None
    mode: str = "txt2img"
    prompt: str = ""
    negative_prompt: str = ""
    favourite: bool = False
    size_bytes: int = 0
    created_at: float = 0.0

    #: img2img results: SSIM between input and output (engine.keep.Drift's
    #: figures, read back from the PNG's infotext); None for other modes.
    drift: Optional[dict] = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("path")  # a server-side detail
        return data


@dataclass
class JobView:
    id: str
    state: str
    position: int
    step: int
    total: int
    eta_seconds: Optional[float]
    error: Optional[str]
    request: dict
    images: list[ImageView] = field(default_factory=list)
    preview_png: Optional[bytes] = None
    cost: int = 0
    refunded: bool = False
    source: str = "api"
    created_at: float = 0.0
    started_at: Optional[float] = None
    finished_at: Optional[float] = None

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "state": self.state,
            "position": self.position,
            "step": self.step,
            "total": self.total,
            "progress": (self.step / self.total) if self.total else (1.0 if self.state == "succeeded" else 0.0),
            "eta_seconds": self.eta_seconds,
            "error": self.error,
            "cost": self.cost,
            "refunded": self.refunded,
            "source": self.source,
            "request": self.request,
            "images": [img.to_dict() for img in self.images],
            "preview_url": f"/api/jobs/{self.id}/preview" if self.preview_png else None,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def image_view(row: Image, data_dir: Path, favourite: bool = False) -> ImageView:
    return ImageView(
        id=row.id,
        url=f"/api/images/{row.id}/file",
        path=str(data_dir / row.path),
        seed=row.seed,
        width=row.width,
        height=row.height,
        parameters=row.parameters,
        index=row.index_in_job,
        job_id=row.job_id,
        parent_id=row.parent_id,
        model=row.model,
        style=row.style,
        mode=row.mode,
        prompt=row.prompt,
        negative_prompt=row.negative_prompt,
        favourite=favourite,
        size_bytes=row.size_bytes,
        created_at=row.created_at,
        drift=drift_of(row.parameters),
    )


def drift_of(parameters: str) -> Optional[dict]:
    """The drift figures an img2img result carries in its infotext
    (`Drift SSIM`, `Kept SSIM`, `Kept area`, `Kept faces`), in the shape of
    engine.keep.Drift.to_dict(); None when the image has none."""
    if not parameters or "Drift SSIM:" not in parameters:
        return None
    from ..store.metadata import parse_parameters

    fields = parse_parameters(parameters)

    def number(key: str, kind=float):
        try:
            return kind(fields[key])
        except (KeyError, ValueError):
            return None

    ssim = number("Drift SSIM")
    if ssim is None:
        return None
    return {"ssim": ssim, "kept_ssim": number("Kept SSIM"), "kept_fraction": number("Kept area") or 0.0,
            "faces": number("Kept faces", int) or 0}


def size_factor(width: int, height: int, native: int) -> int:
    """Credits scale with pixels: 1 up to the model's native area, then one
    more per started native-area (512² model: 768×768 costs 3×)."""
    if not width or not height or not native:
        return 1
    return max(1, math.ceil(width * height / (native * native)))


class JobService:
    def __init__(
        self,
        db: Database,
        engine: Any,
        catalog: Any,
        data_dir: Path,
        huey: Any,
        *,
        allow_paths: bool = False,
        worker_id: Optional[str] = None,
        max_upload_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        self.db = db
        self.engine = engine
        self.catalog = catalog
        self.data_dir = Path(data_dir)
        self.allow_paths = allow_paths
        self.max_upload_bytes = max_upload_bytes
        # Stable across restarts of the same server, so a restart recognises
        # the jobs it was running itself (and not those of another machine).
        self.worker_id = worker_id or f"{socket.gethostname()}:{self.data_dir.resolve()}"[:64]
        self.queue = JobQueue(huey, self._run)
        self._tokens: dict[str, CancelToken] = {}
        self._changed = threading.Condition()
        self._version = 0
        self._stopping = False

    # --- lifecycle ------------------------------------------------------

    def start(self, worker: bool = True, workers: int = 1) -> None:
        self._stopping = False
        (self.data_dir / "images").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "inputs").mkdir(parents=True, exist_ok=True)
        self.recover()
        if worker:
            self.queue.start_worker(workers)

    def stop(self) -> None:
        """Stop the worker: a running job stops at its next step, is marked
        failed and refunded (the same as after a crash)."""
        self._stopping = True
        for token in list(self._tokens.values()):
            token.cancel()
        self.queue.stop_worker()

    def recover(self) -> None:
        """After a restart: jobs this server was running failed with a reason
        and their credits go back; queued jobs are enqueued again (a job id
        that is already in the queue is claimed once, so duplicates are harmless)."""
        with self.db.read() as s:
            orphans = s.scalars(
                select(Job.id).where(Job.state == "running", Job.worker == self.worker_id)
            ).all()
            queued = s.scalars(
                select(Job.id).where(Job.state == "queued").order_by(Job.created_at, Job.id)
            ).all()
        for job_id in orphans:
            self._finish(job_id, "failed", "the server restarted while this job was running; its credits were refunded",
                         refund=True, from_states=("running",))
        for job_id in queued:
            try:
                self.queue.enqueue(job_id)
            except Exception:
                log.exception("could not re-enqueue job %s", job_id)

    # --- submitting -----------------------------------------------------

    def submit(
        self,
        user: Account,
        request: GenerationRequest | dict,
        *,
        inputs: Optional[dict[str, bytes]] = None,
        source: str = "api",
    ) -> JobView:
        """Check, price, charge and enqueue a request; returns at once.

        `inputs` maps image fields (init_image, mask) to uploaded file bytes;
        the request's own field then holds a placeholder such as
        "upload:init_image" (GenerationRequest needs a reference to validate).
        Image fields may also hold "image:<id>" (a stored image of this user),
        base64 / a data URI, or a file path (only with allow_paths)."""
        if not isinstance(request, GenerationRequest):
            request = GenerationRequest.model_validate(request)
        job_id = new_id()
        input_dir = self.data_dir / "inputs" / job_id
        try:
            run_request, public, parent_id = self._resolve_images(user, request, inputs or {}, input_dir)
            prepared = self._prepare(run_request)
            cost = self.cost_of(prepared)
            public_request = with_image_refs(prepared, public).model_dump(mode="json")
            with self.db.write() as s:
                accounts.charge(s, user.id, cost, job_id)
                s.add(
                    Job(
                        id=job_id,
                        user_id=user.id,
                        source=source,
                        state="queued",
                        request_json=json.dumps(public_request),
                        run_json=prepared.model_dump_json(),
                        parent_image_id=parent_id,
                        cost=cost,
                        total=prepared.steps or 0,
                    )
                )
        except BaseException:
            shutil.rmtree(input_dir, ignore_errors=True)
            raise
        try:
            self.queue.enqueue(job_id)
        except Exception as err:
            log.exception("enqueue failed")
            self._finish(job_id, "failed", f"the job queue is unavailable ({type(err).__name__})",
                         refund=True, from_states=("queued",))
            raise QueueUnavailable("the job queue is unavailable; your credits were refunded") from None
        self._notify()
        return self.get(user, job_id)

    def estimate(self, user: Account, request: GenerationRequest | dict) -> int:
        if not isinstance(request, GenerationRequest):
            request = GenerationRequest.model_validate(request)
        update = {}
        for name in IMAGE_FIELDS:
            ref = image_ref(request, name)
            if isinstance(ref, str) and ref.startswith("image:"):
                update[name] = str(self.data_dir / self._own_image(user, ref[6:]).path)
            elif isinstance(ref, str) and ref.startswith(("upload:", "input:")):
                update[name] = None  # not sent for an estimate: priced at the given or native size
            elif isinstance(ref, str) and not self.allow_paths and (
                _is_path(ref) or looks_like_path(ref)
            ):
                raise RequestError(_PATH_REFUSED.format(name=name))
        return self.cost_of(self._prepare(with_image_refs(request, update)))

    def cost_of(self, prepared: GenerationRequest) -> int:
        """Credits for a prepared request: the model's cost per image times the
        size factor of every pass (hires fix adds a pass at the larger size)."""
        info = self.catalog.get(prepared.model)
        base = int(getattr(info, "cost", 1) or 0)
        native = int(getattr(info, "native_size", 0) or 0)
        width, height = prepared.width or 0, prepared.height or 0
        if prepared.mode is Mode.outpaint and width and height:
            # the model draws the whole extended canvas, not the original
            o = prepared.outpaint
            width, height = width + o.left + o.right, height + o.top + o.bottom
        factor = size_factor(width, height, native)
        if prepared.hires_scale and prepared.hires_scale > 1 and width and height:
            big_w, big_h = hires_size(width, height, prepared.hires_scale)
            factor += size_factor(big_w, big_h, native)
        return base * prepared.count * factor

    def _prepare(self, request: GenerationRequest) -> GenerationRequest:
        # The engine checks model, sampler, style and size bounds (RequestError / ModelNotFound).
        return self.engine.prepare(request)

    def _resolve_images(self, user: Account, request: GenerationRequest, inputs: dict[str, bytes], input_dir: Path):
        """Turn every image reference into a file the worker can read.
        Returns (request to run, public refs for display, parent image id)."""
        run_update: dict[str, Any] = {}
        public: dict[str, Any] = {}
        parent_id = None
        unknown = set(inputs) - set(IMAGE_FIELDS)
        if unknown:
            raise RequestError(f"unexpected upload field(s) {', '.join(sorted(unknown))}; expected {', '.join(IMAGE_FIELDS)}")
        for name in IMAGE_FIELDS:
            data = inputs.get(name)
            ref = image_ref(request, name)
            if data is not None:
                if len(data) > self.max_upload_bytes:
                    raise PayloadTooLarge(
                        f"{name} upload is {len(data) // 1024} KB; the limit is {self.max_upload_bytes // 1024} KB"
                    )
                if ref is None and IMAGE_SLOTS[name][0] == "control":
                    raise RequestError(f"{name} was uploaded but the request has no control settings")
                run_update[name] = str(self._save_input(input_dir, name, data))
                public[name] = f"upload:{name}"
            elif not ref:
                continue
            elif ref.startswith(("upload:", "input:")):
                raise RequestError(f"{name} refers to an upload ({ref}) but no file was uploaded as {name!r}")
            elif ref.startswith("image:"):
                row = self._own_image(user, ref[6:])
                run_update[name] = str(self.data_dir / row.path)
                public[name] = ref
                if name == "init_image":
                    parent_id = row.id
            elif _is_path(ref):
                if not self.allow_paths:
                    raise RequestError(_PATH_REFUSED.format(name=name))
                load_image(ref, what=name)
                public[name] = ref
            elif looks_like_path(ref):
                # A path that does not exist here: never say so (or probe further).
                raise RequestError(_PATH_REFUSED.format(name=name))
            else:  # base64 or data URI
                if len(ref) * 3 // 4 > self.max_upload_bytes:
                    raise PayloadTooLarge(f"{name} is larger than the upload limit of {self.max_upload_bytes // 1024} KB")
                image = load_image(ref, what=name)
                input_dir.mkdir(parents=True, exist_ok=True)
                path = input_dir / f"{name}.png"
                save_input_png(image, path)
                run_update[name] = str(path)
                public[name] = f"upload:{name}"
        if run_update:
            request = with_image_refs(request, run_update)
        return request, public, parent_id

    def _save_input(self, input_dir: Path, name: str, data: bytes) -> Path:
        input_dir.mkdir(parents=True, exist_ok=True)
        path = input_dir / f"{name}.bin"
        path.write_bytes(data)
        image = load_image(str(path), what=name)  # raises ImageError for non-images and bombs
        png = input_dir / f"{name}.png"
        save_input_png(image, png)
        path.unlink()
        return png

    def image_file(self, user: Account, image_id: str) -> Path:
        """The PNG of one of this user's stored images (ImageNotFound otherwise)."""
        return self.data_dir / self._own_image(user, image_id).path

    def _own_image(self, user: Account, image_id: str) -> Image:
        with self.db.read() as s:
            row = s.get(Image, image_id)
            if row is None or row.user_id != user.id:
                raise ImageNotFound(image_id)
            return row

    # --- reading --------------------------------------------------------

    def get(self, user: Optional[Account], job_id: str) -> JobView:
        with self.db.read() as s:
            job = s.get(Job, job_id)
            if job is None or (user is not None and job.user_id != user.id):
                raise JobNotFound(job_id)
            return self._view(s, job)

    def _view(self, s, job: Job) -> JobView:
        position = 0
        if job.state == "queued":
            position = 1 + (
                s.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(
                        Job.state == "queued",
                        or_(Job.created_at < job.created_at, and_(Job.created_at == job.created_at, Job.id < job.id)),
                    )
                )
                or 0
            )
        images = []
        if job.state == "succeeded":
            rows = s.scalars(select(Image).where(Image.job_id == job.id).order_by(Image.index_in_job)).all()
            images = [image_view(r, self.data_dir) for r in rows]
        return JobView(
            id=job.id,
            state=job.state,
            position=position,
            step=job.step,
            total=job.total,
            eta_seconds=job.eta_seconds,
            error=job.error,
            request=json.loads(job.request_json),
            images=images,
            preview_png=job.preview_png,
            cost=job.cost,
            refunded=job.refunded,
            source=job.source,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )

    def wait(self, user: Optional[Account], job_id: str, timeout: Optional[float] = None) -> JobView:
        """Block until the job ends (or `timeout` seconds pass: then the
        current, unfinished view is returned)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            view = self.get(user, job_id)
            if view.done:
                return view
            remaining = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if remaining <= 0:
                return view
            with self._changed:
                self._changed.wait(remaining)

    def running(self, user: Optional[Account] = None) -> Optional[JobView]:
        with self.db.read() as s:
            query = select(Job).where(Job.state == "running")
            if user is not None:
                query = query.where(Job.user_id == user.id)
            job = s.scalars(query.order_by(Job.started_at.desc()).limit(1)).first()
            return self._view(s, job) if job else None

    def list_jobs(self, user: Account, states: Optional[list[str]] = None, limit: int = 50) -> list[JobView]:
        with self.db.read() as s:
            query = select(Job).where(Job.user_id == user.id)
            if states:
                query = query.where(Job.state.in_(states))
            jobs = s.scalars(query.order_by(Job.created_at.desc()).limit(limit)).all()
            return [self._view(s, j) for j in jobs]

    # --- cancelling -----------------------------------------------------

    def cancel(self, user: Optional[Account], job_id: str) -> JobView:
        view = self.get(user, job_id)  # 404 for other users' jobs
        if view.state == "queued":
            self._finish(job_id, "cancelled", None, refund=True, from_states=("queued",))
        if self.get(user, job_id).state == "running":
            with self.db.write() as s:
                s.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
            token = self._tokens.get(job_id)
            if token is not None:
                token.cancel()
        self._notify()
        return self.get(user, job_id)

    # --- the worker -----------------------------------------------------

    def _notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    @property
    def version(self) -> int:
        """Bumped whenever a job changes in this process: a cheap way for
        pollers (SSE) to know when re-reading the job row is worth it."""
        return self._version

    def _finish(self, job_id: str, state: str, error: Optional[str], *, refund: bool,
                from_states: tuple[str, ...] = ("running",)) -> bool:
        """Move a job to a final state once; refund its credits at most once."""
        with self.db.write() as s:
            moved = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.state.in_(from_states))
                .values(state=state, error=error, finished_at=time.time(), eta_seconds=None)
            ).rowcount
            if moved and refund:
                job = s.get(Job, job_id)
                if job.cost and s.execute(
                    update(Job).where(Job.id == job_id, Job.refunded.is_(False)).values(refunded=True)
                ).rowcount:
                    accounts.refund(s, job.user_id, job.cost, job_id)
        if moved:
            shutil.rmtree(self.data_dir / "inputs" / job_id, ignore_errors=True)
        self._notify()
        return bool(moved)

    def _claim(self, job_id: str) -> Optional[Job]:
        with self.db.write() as s:
            claimed = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == "queued")
                .values(state="running", started_at=time.time(), worker=self.worker_id, step=0)
            ).rowcount
            return s.get(Job, job_id) if claimed else None

    def _run(self, job_id: str) -> None:
        """The huey task: run one job from its row to its images."""
        if self._stopping:
            return  # left queued: the next start enqueues it again
        job = self._claim(job_id)
        if job is None:
            return  # cancelled while queued, or a duplicate queue entry
        self._notify()
        token = CancelToken()
        self._tokens[job_id] = token
        try:
            request = GenerationRequest.model_validate_json(job.run_json)
            result = self.engine.generate(request, on_progress=self._progress_writer(job_id, token), cancel=token)
            self._store_result(job, result)
        except Cancelled:
            if self._stopping:
                self._finish(job_id, "failed", "the server stopped while this job was running; its credits were refunded",
                             refund=True)
            else:
                self._finish(job_id, "cancelled", None, refund=True)
        except StudioError as err:
            self._finish(job_id, "failed", str(err), refund=True)
        except Exception as err:
            log.exception("job %s failed", job_id)
            self._finish(job_id, "failed", f"internal error: {type(err).__name__}: {err}", refund=True)
        finally:
            self._tokens.pop(job_id, None)
            shutil.rmtree(self.data_dir / "inputs" / job_id, ignore_errors=True)

    def _progress_writer(self, job_id: str, token: CancelToken):
        started = time.monotonic()
        first: list = []  # (time, step) of the first report: model loading is behind us then
        last_preview = [0.0]

        def on_progress(progress: Progress) -> None:
            now = time.monotonic()
            values: dict[str, Any] = {"step": progress.step, "total": progress.total}
            if not first:
                first.append((now, progress.step))
            t0, s0 = first[0]
            if progress.step > s0:
                per_step = (now - t0) / (progress.step - s0)
            else:
                per_step = (now - started) / max(progress.step, 1)
            values["eta_seconds"] = round(per_step * (progress.total - progress.step), 2)
            if progress.preview is not None and now - last_preview[0] >= PREVIEW_EVERY_S:
                last_preview[0] = now
                values["preview_png"] = _thumbnail_png(progress.preview)
            with self.db.write() as s:
                cancel = s.execute(
                    update(Job).where(Job.id == job_id).values(**values).returning(Job.cancel_requested)
                ).scalar()
            if cancel or self._stopping:
                token.cancel()
            self._notify()

        return on_progress

    def _store_result(self, job: Job, result) -> None:
        request: GenerationRequest = result.request
        public = json.loads(job.request_json)
        style = (result.info or {}).get("style") or request.style
        month = time.strftime("%Y-%m")
        folder = self.data_dir / "images" / month
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for generated in result.images:
            image_id = new_id()
            rel = f"images/{month}/{image_id}.png"
            # The settings that re-make exactly this image.
            settings = request.model_dump(mode="json")
            for slot in IMAGE_FIELDS:  # the public references, never the server's input files
                _set_json_image_ref(settings, slot, _json_image_ref(public, slot))
            settings.update(seed=generated.seed, count=1)
            settings_json = json.dumps(settings)
            # The PNG's own chunk has the engine's shape (see engine.request_json),
            # so `imagestudio generate --from image.png` reads server images too.
            chunk = json.dumps({"request": settings, "index": generated.index}, separators=(",", ":"))
            _save_png(generated.image, self.data_dir / rel, generated.parameters, chunk)
            width, height = generated.image.size
            rows.append(
                Image(
                    id=image_id,
                    user_id=job.user_id,
                    job_id=job.id,
                    parent_id=job.parent_image_id,
                    path=rel,
                    size_bytes=(self.data_dir / rel).stat().st_size,
                    width=width,
                    height=height,
                    seed=generated.seed,
                    index_in_job=generated.index,
                    model=request.model,
                    style=style,
                    mode=getattr(request.mode, "value", str(request.mode)),
                    prompt=request.prompt,
                    negative_prompt=request.negative_prompt,
                    parameters=generated.parameters,
                    request_json=settings_json,
                )
            )
        with self.db.write() as s:
            for row in rows:
                s.add(row)
            s.flush()
            for row in rows:
                self.db.index_image(s, row)
            moved = s.execute(
                update(Job)
                .where(Job.id == job.id, Job.state == "running")
                .values(state="succeeded", finished_at=time.time(), step=Job.total, eta_seconds=None)
            ).rowcount
            if not moved:  # cancelled at the very end: keep nothing
                s.rollback()
                for row in rows:
                    (self.data_dir / row.path).unlink(missing_ok=True)
        self._notify()


_PATH_REFUSED = ("{name}: the server does not read file paths; upload the image (multipart), "
                 "send it as base64 or a data URI, or use image:<id>")


def _is_path(ref: str) -> bool:
    return not ref.startswith("data:") and len(ref) < 4096 and os.path.exists(ref)


_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def looks_like_path(ref: str) -> bool:
    """A client string meant as a file path: short, with a path separator, a
    leading ~ or an image suffix, and not base64 (base64 has '/' too, but only
    its own alphabet, in padded runs)."""
    if len(ref) >= 4096 or ref.startswith("data:"):
        return False
    if len(ref) > 64 and len(ref) % 4 == 0 and _BASE64_CHARS.issuperset(ref):
        return False
    return "/" in ref or "\\" in ref or ref.startswith("~") or ref.lower().endswith(
        (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"))


#: Modes PNG can hold; other uploads are converted to RGB(A) first.
_PNG_MODES = ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA")


def save_input_png(image, path: Path) -> None:
    """Save an uploaded image as PNG keeping its text chunks (`parameters`,
    `imagestudio`...): a variation reuses the prompt of an uploaded studio PNG
    and an upscale keeps its source's settings. A1111's JPEG/WebP carry the
    infotext in EXIF instead; it becomes the PNG's `parameters` chunk."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    texts = {**image.info, **(getattr(image, "text", None) or {})}
    kept = {k: v for k, v in texts.items() if isinstance(k, str) and isinstance(v, str)}
    if "parameters" not in kept and image.format not in (None, "PNG"):
        from ..engine.analyse import exif_parameters

        found = exif_parameters(image)
        if found:
            kept["parameters"] = found
    for key, value in kept.items():
        try:
            info.add_text(key, value, zip=len(value) > 1024)
        except Exception:  # a key PNG cannot hold (too long, odd characters): skip it
            log.debug("input text chunk %r dropped", key)
    if image.mode not in _PNG_MODES:  # CMYK / YCbCr JPEGs, float TIFFs...
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    image.save(path, format="PNG", pnginfo=info)


def _thumbnail_png(image) -> bytes:
    image = image.copy()
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _save_png(image, path: Path, parameters: str, request_json: str) -> None:
    from ..store.metadata import save_png

    save_png(image, path, parameters, request_json)
