"""A restart loses nothing: the server process is killed (SIGKILL, no shutdown
code) with one job running and others queued; after a restart the queued
jobs run and the interrupted one is failed with a reason and refunded. The
same with the Redis queue. Users are created with the real CLI."""

from __future__ import annotations

import subprocess
import sys
import time

from typer.testing import CliRunner

from imagestudio.cli import app as cli
from serverkit import ROOT, TINY, sse_events, spawn_server, wait_job


def test_users_cli(tmp_path):
    runner = CliRunner()
    data = ["--data", str(tmp_path)]
    added = runner.invoke(cli, ["users", "add", "ann", "--credits", "5", *data])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip().splitlines()[-1]
    assert key.startswith("isk_") and len(key) > 30
    assert runner.invoke(cli, ["users", "add", "ann", *data]).exit_code != 0, "names are unique"
    granted = runner.invoke(cli, ["users", "grant", "ann", "7", *data])
    assert "12 credits" in granted.stdout
    assert "0 credits" in runner.invoke(cli, ["users", "grant", *data, "--", "ann", "-50"]).stdout, "never below zero"
    second = runner.invoke(cli, ["users", "keys", "ann", *data]).stdout.strip()
    assert second.startswith("isk_") and second != key
    listing = runner.invoke(cli, ["users", "list", *data]).stdout
    assert "ann\t0\t" in listing and key[:10] in listing and second[:10] in listing
    assert key not in listing, "full keys are never shown again"
    missing = runner.invoke(cli, ["users", "grant", "nobody", "1", *data])
    assert missing.exit_code != 0 and "nobody" in missing.output


def _cli_add_user(data_dir, name, credits) -> str:
    out = subprocess.run([sys.executable, "-m", "imagestudio", "users", "add", name, "--credits", str(credits),
                          "--data", str(data_dir)], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_kill_mid_queue_then_restart_loses_nothing(tmp_path, server_models):
    data = tmp_path / "data"
    key = _cli_add_user(data, "ann", 20)
    server = spawn_server(data, server_models, args=("--shared",))
    try:
        client = server.client(key)
        slow = client.post("/api/jobs", json={"prompt": "a long purple night", **TINY, "steps": 150}).json()
        queued = [client.post("/api/jobs", json={"prompt": f"a queued {c} moon", **TINY}).json()
                  for c in ("red", "green", "blue")]
        assert client.get("/api/me").json()["credits"] == 16
        for name, _ in sse_events(client, slow["id"]):
            if name == "progress":
                break
        assert all(client.get(f"/api/jobs/{j['id']}").json()["state"] == "queued" for j in queued)
    finally:
        server.kill()

    server = spawn_server(data, server_models, args=("--shared",))
    try:
        client = server.client(key)
        interrupted = wait_job(client, slow["id"], timeout=60)
        assert interrupted["state"] == "failed"
        assert "restarted" in interrupted["error"] and interrupted["refunded"] is True
        for job in queued:
            done = wait_job(client, job["id"], timeout=120)
            assert done["state"] == "succeeded", done
            assert client.get(done["images"][0]["url"]).status_code == 200
        assert client.get("/api/me").json()["credits"] == 17, "3 jobs charged, the interrupted one refunded"
        # Each job ran once even though the queue held it twice (persisted + re-enqueued).
        assert client.get("/api/images").json()["total"] == 3
    finally:
        server.stop()


def test_redis_queue_survives_a_restart(make_server, redis_queue, tmp_path):
    redis_url, name = redis_queue
    data = tmp_path / "redis-data"
    # A server without a worker only enqueues: the jobs wait in Redis.
    front = make_server(data, redis_url=redis_url, queue_name=name, worker=False)
    client = front.client()
    jobs = [client.post("/api/jobs", json={"prompt": f"a {c} square", **TINY}).json() for c in ("red", "blue")]
    cancelled = client.post("/api/jobs", json={"prompt": "never mind", **TINY}).json()
    client.post(f"/api/jobs/{cancelled['id']}/cancel")
    assert front.service.queue.pending() >= 3
    time.sleep(0.3)
    assert all(client.get(f"/api/jobs/{j['id']}").json()["state"] == "queued" for j in jobs)
    front.stop()

    worker = make_server(data, redis_url=redis_url, queue_name=name)
    client = worker.client()
    for job in jobs:
        assert wait_job(client, job["id"])["state"] == "succeeded"
    assert client.get(f"/api/jobs/{cancelled['id']}").json()["state"] == "cancelled"
    assert client.get("/api/images").json()["total"] == 2


def test_a1111_options_outlive_a_restart(make_server, tmp_path):
    """A client that chose a model with POST /sdapi/v1/options keeps it after the
    server restarts, as A1111 keeps its config.json."""
    data = tmp_path / "options-data"
    first = make_server(data)
    client = first.client()
    models = client.get("/sdapi/v1/sd-models").json()
    inpaint = next(m["title"] for m in models if m["model_name"] == "tiny-inpaint")
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": inpaint, "samples_format": "jpg"}).status_code == 200
    too_big = client.post("/sdapi/v1/options", json={"junk": "x" * 300_000})
    assert too_big.status_code == 413 and "limit is 256 KB" in too_big.text
    first.stop()

    client = make_server(data).client()
    options = client.get("/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"] == inpaint and options["samples_format"] == "jpg"
    made = client.post("/sdapi/v1/txt2img", json={"prompt": "a boat", "steps": 2, "width": 64, "height": 64}).json()
    assert made["parameters"]["prompt"] == "a boat"
    assert '"sd_model_name": "tiny-inpaint"' in made["info"]


def test_serve_cli_with_postgresql_and_redis(tmp_path, server_models, pg_url, redis_queue):
    redis_url, name = redis_queue
    data = tmp_path / "pg-data"
    server = spawn_server(data, server_models, args=("--db", pg_url, "--redis", redis_url, "--queue-name", name))
    try:
        client = server.client()
        job = wait_job(client, client.post("/api/jobs", json={"prompt": "a green circle", **TINY}).json()["id"])
        assert job["state"] == "succeeded", job
        assert client.get("/api/images", params={"q": "green"}).json()["total"] == 1
        assert not (data / "studio.db").exists() and not (data / "queue.db").exists()
    finally:
        server.stop()
    assert server.process.returncode == 0, "SIGINT shuts the server down cleanly"


def test_binding_another_address_implies_shared_mode():
    from imagestudio.server.settings import Settings

    assert Settings(host="0.0.0.0").shared and Settings(host="192.168.1.5").shared
    assert not Settings(host="127.0.0.1").shared and Settings(host="127.0.0.1", shared=True).shared
