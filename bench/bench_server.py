"""Server throughput and overhead: 50 small jobs through the real server (HTTP,
SQL job rows, huey queue, worker thread, PNG + history rows) against the same
50 generations called on the engine directly, in one run, one engine.

    .venv/bin/python -m bench.bench_server [--jobs 50] [--steps 2] [--size 64] [--backend sqlite|redis|both]

Phases, per queue backend:
  burst       submit all jobs at once: jobs/minute, queue wait p50/p95 (created -> started)
  sequential  one job at a time: pickup latency p50/p95 (created -> started) and the
              end-to-end time per job (POST -> done seen by the client) vs. the engine alone
Prints ratios; never fails on time (it is not a test)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pct(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--backend", choices=("sqlite", "redis", "both"), default="both")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "tests"))
    from serverkit import make_models_dir, sse_events, start_server, wait_job

    from imagestudio.engine import Catalog, Engine
    from imagestudio.request import GenerationRequest

    tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
    models = make_models_dir(tmp / "models", inpaint=False)
    engine = Engine(Catalog(models, include_embedded=False))
    body = {"prompt": "a red circle on the left", "model": "tiny", "width": args.size, "height": args.size,
            "steps": args.steps}

    # Direct: the engine alone, same requests.
    engine.generate(GenerationRequest(**body))  # load the pipeline
    direct = []
    for i in range(args.jobs):
        start = time.perf_counter()
        engine.generate(GenerationRequest(**body, seed=i))
        direct.append(time.perf_counter() - start)
    direct_total = sum(direct)
    direct_each = statistics.median(direct)
    print(f"jobs={args.jobs} model=tiny size={args.size} steps={args.steps} torch threads={torch.get_num_threads()} "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')}")
    print(f"engine direct: {60 * args.jobs / direct_total:7.1f} jobs/min   median {1000 * direct_each:6.1f} ms/job")

    backends = ["sqlite", "redis"] if args.backend == "both" else [args.backend]
    for backend in backends:
        settings = {}
        if backend == "redis":
            try:
                import redis

                redis.Redis.from_url(args.redis).ping()
            except Exception as err:
                print(f"[redis] skipped: {err}")
                continue
            settings = {"redis_url": args.redis, "queue_name": f"bench-{os.getpid()}"}
        try:
            with start_server(tmp / f"data-{backend}", models, engine=engine, catalog=engine.catalog,
                              **settings) as server:
                client = server.client()
                wait_job(client, client.post("/api/jobs", json=body).json()["id"])  # warm the path

                # Burst: everything queued at once.
                t0 = time.perf_counter()
                ids = [client.post("/api/jobs", json=dict(body, seed=i)).json()["id"] for i in range(args.jobs)]
                submitted = time.perf_counter() - t0
                jobs = [wait_job(client, job_id, timeout=600) for job_id in ids]
                burst_total = time.perf_counter() - t0
                waits = [j["started_at"] - j["created_at"] for j in jobs]
                failed = sum(j["state"] != "succeeded" for j in jobs)

                # Sequential, interleaved with direct engine calls (so both see the
                # same machine load): pickup latency and per-job overhead. The
                # client learns "done" from the SSE stream, as a page would.
                pickups, end_to_end, direct_seq = [], [], []
                for i in range(args.jobs):
                    t1 = time.perf_counter()
                    engine.generate(GenerationRequest(**body, seed=i))
                    direct_seq.append(time.perf_counter() - t1)
                    t1 = time.perf_counter()
                    job_id = client.post("/api/jobs", json=dict(body, seed=i)).json()["id"]
                    job = [data for name, data in sse_events(client, job_id) if name == "done"][0]
                    end_to_end.append(time.perf_counter() - t1)
                    pickups.append(job["started_at"] - job["created_at"])
                direct_each = statistics.median(direct_seq)
            rate = 60 * args.jobs / burst_total
            print(f"[{backend}] burst:      {rate:7.1f} jobs/min ({failed} failed; all {args.jobs} submitted in "
                  f"{submitted:.2f} s)   queue wait p50 {pct(waits, .5):.2f} s  p95 {pct(waits, .95):.2f} s")
            print(f"[{backend}] sequential: pickup p50 {1000 * pct(pickups, .5):6.1f} ms  p95 "
                  f"{1000 * pct(pickups, .95):6.1f} ms   end-to-end median {1000 * statistics.median(end_to_end):6.1f} ms/job")
            print(f"[{backend}] server / engine: throughput {rate / (60 * args.jobs / direct_total):.2f}x   "
                  f"per-job time {statistics.median(end_to_end) / direct_each:.2f}x "
                  f"(+{1000 * (statistics.median(end_to_end) - direct_each):.0f} ms per job; engine alone "
                  f"{1000 * direct_each:.0f} ms interleaved)")
        except Exception as err:  # a benchmark reports, it does not fail
            print(f"[{backend}] error: {type(err).__name__}: {err}")


if __name__ == "__main__":
    main()
