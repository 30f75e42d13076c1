"""The huey queue: SqliteHuey in the data folder by default (embedded, nothing
to start), RedisHuey when a Redis URL is given (several worker machines can
share it). Job *state* lives in SQL, not in huey: the queue only carries job
ids, so progress, cancellation and history read the same with either backend."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

import threading

from huey import RedisHuey, SqliteHuey
from huey.consumer import Consumer, Worker

log = logging.getLogger(__name__)

TASK_NAME = "imagestudio.run_job"


def make_huey(data_dir: Path, redis_url: Optional[str] = None, name: str = "imagestudio"):
    if redis_url:
        # results=False: the SQL jobs table holds every result.
        return RedisHuey(name, url=redis_url, results=False)
    return SqliteHuey(name, filename=str(Path(data_dir) / "queue.db"), results=False)


class WakeableWorker(Worker):
    """huey's worker, whose idle sleep ends as soon as this process enqueues a
    job (SqliteHuey is polled; without this a job could wait a whole poll)."""

    wake: threading.Event

    def sleep(self):
        if self.delay > self.max_delay:
            self.delay = self.max_delay
        if self.wake.wait(self.delay):
            self.wake.clear()
            self.delay = self.default_delay
        else:
            self.delay *= self.backoff


class InProcessConsumer(Consumer):
    """huey's consumer run from inside `serve`: worker threads, no signal
    handlers (uvicorn owns SIGINT/SIGTERM, and tests start it off the main
    thread), and short polling so a queued job starts within ~0.1 s."""

    def __init__(self, huey, workers: int = 1, wake: threading.Event | None = None) -> None:
        self.wake = wake or threading.Event()
        super().__init__(
            huey,
            workers=workers,
            periodic=False,
            initial_delay=0.02,
            backoff=1.3,
            max_delay=0.5,
            worker_type="thread",
            check_worker_health=False,
        )

    def _create_worker(self):
        worker = WakeableWorker(
            huey=self.huey,
            stop_flag=self.stop_flag,
            default_delay=self.default_delay,
            max_delay=self.max_delay,
            backoff=self.backoff,
            max_tasks=self.max_tasks,
        )
        worker.wake = self.wake
        return worker

    def _set_signal_handlers(self) -> None:  # noqa: D401 - huey hook
        pass


class JobQueue:
    """Enqueue job ids; optionally consume them in this process."""

    def __init__(self, huey, run: Callable[[str], None]) -> None:
        self.huey = huey
        self._task = huey.task(name=TASK_NAME)(run)
        self._consumer: Optional[InProcessConsumer] = None
        self._wake = threading.Event()

    def enqueue(self, job_id: str) -> None:
        self._task(job_id)
        self._wake.set()

    def pending(self) -> int:
        try:
            return self.huey.pending_count()
        except Exception:
            return -1

    def start_worker(self, workers: int = 1) -> None:
        if self._consumer is None:
            self._consumer = InProcessConsumer(self.huey, workers=workers, wake=self._wake)
            self._consumer.start()

    def stop_worker(self) -> None:
        if self._consumer is not None:
            # The running job was already told to stop (see JobService.stop),
            # so a graceful join returns within one sampling step.
            self._consumer.shutdown_timeout = 30
            self._consumer.stop_flag.set()
            self._wake.set()  # end an idle sleep now
            self._consumer.stop(graceful=True)
            self._consumer = None
