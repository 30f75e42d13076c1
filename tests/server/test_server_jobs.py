"""The job flow over real HTTP: submit -> SSE progress in order -> PNG with its
parameters chunk; history, search, favourites, reuse settings, delete;
uploads and image references; cancel of queued and running jobs."""

from __future__ import annotations

import io
import threading

from PIL import Image

from imagestudio.store.metadata import parse_parameters, read_parameters, read_request
from serverkit import TINY, sse_events, wait_job

SLOW = dict(TINY, steps=60)  # ~3 s on one core: long enough to cancel mid-run


def png_bytes(color=(200, 30, 30), size=(64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_submit_streams_progress_in_order_and_serves_the_png(local_server):
    client = local_server.client()
    response = client.post("/api/jobs", json={"prompt": "a red circle on the grass", **TINY, "steps": 4, "count": 2})
    assert response.status_code == 202, response.text
    job = response.json()
    # The worker may already have picked it up by the time the answer is built.
    assert (job["state"], job["position"] >= 1) in (("queued", True), ("running", False)), job
    assert response.headers["location"] == f"/api/jobs/{job['id']}"
    assert job["request"]["seed"] >= 0, "the seed is drawn at submit, so the job is reproducible"

    events = list(sse_events(client, job["id"]))
    names = [name for name, _ in events]
    assert names[-1] == "done"
    assert "started" in names and names.index("started") < names.index("progress")
    steps = [data["step"] for name, data in events if name == "progress"]
    assert steps == sorted(steps) and len(set(steps)) == len(steps), "progress never goes back"
    assert steps[-1] <= 4
    done = events[-1][1]
    assert done["state"] == "succeeded", done
    assert len(done["images"]) == 2

    first = done["images"][0]
    png = client.get(first["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.size == (64, 64)
    fields = parse_parameters(read_parameters(png.content))
    assert fields["prompt"] == "a red circle on the grass"
    assert fields["Seed"] == str(first["seed"]) and fields["Steps"] == "4"
    assert done["images"][1]["seed"] == first["seed"] + 1
    chunk = read_request(png.content)  # the engine's own chunk shape: `generate --from` reads it
    assert chunk["request"]["seed"] == first["seed"] and chunk["request"]["prompt"] == "a red circle on the grass"

    # Reuse settings: the request that makes exactly this image again.
    settings = client.get(f"/api/images/{first['id']}/settings").json()
    assert settings["seed"] == first["seed"] and settings["count"] == 1 and settings["prompt"] == "a red circle on the grass"
    again = wait_job(client, client.post("/api/jobs", json=settings).json()["id"])
    again_png = client.get(again["images"][0]["url"]).content
    # Same settings, same picture (batch of 2 vs 1 may differ by float rounding).
    diff = [abs(a - b) for a, b in zip(Image.open(io.BytesIO(again_png)).tobytes(), image.tobytes())]
    assert max(diff) <= 3 and sum(diff) / len(diff) < 0.5


def test_history_search_favourites_and_delete(local_server):
    client = local_server.client()
    ids = {}
    for prompt in ("a blue boat on the sea", "a yellow sun in the sky", "a blue house"):
        job = wait_job(client, client.post("/api/jobs", json={"prompt": prompt, **TINY}).json()["id"])
        ids[prompt] = job["images"][0]["id"]

    history = client.get("/api/images").json()
    assert history["total"] == 3
    assert [i["prompt"] for i in history["items"]][0] == "a blue house", "newest first"
    page = client.get("/api/images", params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_offset"] == 2
    assert client.get("/api/images", params={"limit": 2, "offset": 2}).json()["next_offset"] is None

    blue = client.get("/api/images", params={"q": "blue"}).json()
    assert {i["prompt"] for i in blue["items"]} == {"a blue boat on the sea", "a blue house"}
    assert client.get("/api/images", params={"q": "blu boat"}).json()["total"] == 1, "prefix match"
    assert client.get("/api/images", params={"q": 'sun" OR "x'}).json()["total"] == 0, "search syntax is inert"
    assert client.get("/api/images", params={"model": "tiny"}).json()["total"] == 3
    assert client.get("/api/images", params={"model": "other"}).json()["total"] == 0

    sun = ids["a yellow sun in the sky"]
    assert client.post(f"/api/images/{sun}/favourite").json() == {"id": sun, "favourite": True}
    favs = client.get("/api/images", params={"favourite": "true"}).json()
    assert [i["id"] for i in favs["items"]] == [sun] and favs["items"][0]["favourite"] is True
    assert client.get("/api/images", params={"favourite": "false"}).json()["total"] == 2
    client.post(f"/api/images/{sun}/favourite", json={"favourite": False})
    assert client.get("/api/images", params={"favourite": "true"}).json()["total"] == 0

    boat = ids["a blue boat on the sea"]
    assert client.get(f"/api/images/{boat}").json()["prompt"] == "a blue boat on the sea"
    assert client.delete(f"/api/images/{boat}").status_code == 204
    assert client.get(f"/api/images/{boat}").status_code == 404
    assert client.get(f"/api/images/{boat}/file").status_code == 404
    assert client.get("/api/images", params={"q": "boat"}).json()["total"] == 0
    assert client.get("/api/images").json()["total"] == 2


def test_uploads_and_stored_image_references_keep_lineage(local_server):
    client = local_server.client()
    parent = wait_job(client, client.post("/api/jobs", json={"prompt": "a green tree", **TINY}).json()["id"])
    parent_id = parent["images"][0]["id"]

    by_ref = client.post("/api/jobs", json={"prompt": "a green tree at night", "mode": "img2img",
                                            "init_image": f"image:{parent_id}", "strength": 0.5, **TINY})
    assert by_ref.status_code == 202, by_ref.text
    assert by_ref.json()["request"]["init_image"] == f"image:{parent_id}"
    child = wait_job(client, by_ref.json()["id"])
    assert child["state"] == "succeeded", child
    assert child["images"][0]["parent_id"] == parent_id
    assert client.get(f"/api/images/{child['images'][0]['id']}/settings").json()["init_image"] == f"image:{parent_id}"

    request = '{"prompt": "a red square", "mode": "inpaint", "model": "tiny-inpaint", "width": 64, "height": 64, "steps": 2}'
    mask = png_bytes((255, 255, 255))
    uploaded = client.post("/api/jobs", data={"request": request},
                           files={"init_image": ("photo.png", png_bytes(), "image/png"),
                                  "mask": ("mask.png", mask, "image/png")})
    assert uploaded.status_code == 202, uploaded.text
    assert uploaded.json()["request"]["init_image"] == "upload:init_image"
    assert "/" not in uploaded.json()["request"]["mask"], "server paths are not shown"
    done = wait_job(client, uploaded.json()["id"])
    assert done["state"] == "succeeded", done
    assert done["images"][0]["mode"] == "inpaint"


def test_cancel_queued_and_running_jobs(make_server):
    server = make_server(shared=True)
    key = server.add_user("ann", credits=10)
    client = server.client(key)
    running = client.post("/api/jobs", json={"prompt": "a slow red star", **SLOW}).json()
    queued = client.post("/api/jobs", json={"prompt": "a queued blue star", **SLOW}).json()
    assert client.get("/api/me").json()["credits"] == 8

    # Wait until the first job is really sampling, then cancel both.
    for name, data in sse_events(client, running["id"]):
        if name == "progress":
            break
    cancelled = client.post(f"/api/jobs/{queued['id']}/cancel").json()
    assert cancelled["state"] == "cancelled" and cancelled["refunded"] is True
    client.post(f"/api/jobs/{running['id']}/cancel")
    final = wait_job(client, running["id"])
    assert final["state"] == "cancelled", final
    assert final["step"] < 60 and final["images"] == [], "a running job stops between steps, not at the end"
    assert client.get("/api/me").json()["credits"] == 10, "both jobs refunded"
    assert client.get("/api/images").json()["total"] == 0
    # Cancelling again changes nothing (and refunds nothing twice).
    assert client.post(f"/api/jobs/{queued['id']}/cancel").json()["state"] == "cancelled"
    assert client.get("/api/me").json()["credits"] == 10


def test_events_of_a_finished_job_end_at_once_and_preview(local_server):
    client = local_server.client()
    job = client.post("/api/jobs", json={"prompt": "a pink flower", **TINY, "steps": 12}).json()
    previews = []

    def watch():
        for name, data in sse_events(client, job["id"]):
            if name == "progress" and data["preview_url"]:
                previews.append(data["preview_url"])

    watcher = threading.Thread(target=watch)
    watcher.start()
    watcher.join(120)
    assert wait_job(client, job["id"])["state"] == "succeeded"
    events = list(sse_events(client, job["id"]))
    assert [n for n, _ in events] == ["started", "done"]
    if previews:  # the engine decodes a preview every few steps on small models
        assert client.get(previews[0]).headers["content-type"] == "image/png"


def test_stopping_the_server_fails_the_running_job_and_keeps_the_queue(make_server, tmp_path):
    data = tmp_path / "graceful"
    server = make_server(data, shared=True)
    key = server.add_user("ann", credits=5)
    client = server.client(key)
    running = client.post("/api/jobs", json={"prompt": "a slow green star", **SLOW}).json()
    queued = client.post("/api/jobs", json={"prompt": "a waiting blue star", **TINY}).json()
    for name, _ in sse_events(client, running["id"]):
        if name == "progress":
            break
    server.stop()  # graceful: the running job stops at its next step

    server = make_server(data, shared=True)
    client = server.client(key)
    stopped = client.get(f"/api/jobs/{running['id']}").json()
    assert stopped["state"] == "failed" and "stopped" in stopped["error"] and stopped["refunded"]
    assert wait_job(client, queued["id"])["state"] == "succeeded"
    assert client.get("/api/me").json()["credits"] == 4
