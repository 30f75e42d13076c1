"""Waiting for a job without holding a thread.

The A1111 and OpenAI calls block until their job ends. `JobService.wait`
would hold one of the threadpool's threads (40 by default) for the whole
job, so enough waiting clients could starve every other sync endpoint.
Instead we poll the job row, briefly, from the event loop."""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

FIRST_DELAY_S = 0.02
MAX_DELAY_S = 0.25


async def wait_for_job(service, user, job_id: str):
    """The job's view once it has ended (succeeded, failed or cancelled)."""
    delay = FIRST_DELAY_S
    while True:
        view = await run_in_threadpool(service.get, user, job_id)
        if view.done:
            return view
        await asyncio.sleep(delay)
        delay = min(MAX_DELAY_S, delay * 1.5)


async def submit_and_wait(service, user, translated, source: str):
    view = await run_in_threadpool(service.submit, user, translated.request, inputs=translated.inputs, source=source)
    return await wait_for_job(service, user, view.id)
