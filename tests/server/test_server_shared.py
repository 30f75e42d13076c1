"""Shared mode: API keys, per-user isolation, credits (402, refunds, ledger)
and a balance that concurrent requests never drive below zero, on SQLite and
on PostgreSQL."""

from __future__ import annotations

import base64
import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select

from imagestudio.store.db import Database, Image, Job, LedgerEntry, User
from serverkit import TINY, wait_job


def test_keys_are_required_and_accepted_in_three_forms(make_server):
    server = make_server(shared=True)
    key = server.add_user("ann", credits=3)
    anonymous = server.client()
    response = anonymous.get("/api/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert "Bearer" in response.headers["www-authenticate"]
    assert server.client("isk_wrong").get("/api/models").status_code == 401
    assert anonymous.post("/api/jobs", json={"prompt": "a cat", **TINY}).status_code == 401

    assert server.client(key).get("/api/me").json() == {"name": "ann", "credits": 3, "unlimited": False, "shared": True}
    basic = base64.b64encode(f"ann:{key}".encode()).decode()
    assert httpx.get(server.url + "/api/me", headers={"Authorization": f"Basic {basic}"}).json()["name"] == "ann"
    assert httpx.get(server.url + "/api/me", headers={"X-API-Key": key}).json()["name"] == "ann"


def test_users_cannot_see_each_others_jobs_or_images(make_server):
    server = make_server(shared=True)
    ann = server.client(server.add_user("ann", credits=5))
    bob = server.client(server.add_user("bob", credits=5))
    job = wait_job(ann, ann.post("/api/jobs", json={"prompt": "ann's secret red boat", **TINY}).json()["id"])
    image_id = job["images"][0]["id"]

    for method, path in [
        ("GET", f"/api/jobs/{job['id']}"),
        ("GET", f"/api/jobs/{job['id']}/events"),
        ("POST", f"/api/jobs/{job['id']}/cancel"),
        ("GET", f"/api/images/{image_id}"),
        ("GET", f"/api/images/{image_id}/file"),
        ("GET", f"/api/images/{image_id}/settings"),
        ("POST", f"/api/images/{image_id}/favourite"),
        ("DELETE", f"/api/images/{image_id}"),
    ]:
        response = bob.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
    assert bob.get("/api/images").json()["total"] == 0
    assert bob.get("/api/images", params={"q": "secret"}).json()["total"] == 0
    assert bob.get("/api/jobs").json() == []
    # Referencing another user's image as an init image is refused the same way.
    steal = bob.post("/api/jobs", json={"prompt": "x", "mode": "img2img", "init_image": f"image:{image_id}", **TINY})
    assert steal.status_code == 404
    assert bob.get("/api/me").json()["credits"] == 5, "a refused request costs nothing"
    # Ann still has everything.
    assert ann.get(f"/api/images/{image_id}/file").status_code == 200
    assert ann.get("/api/images").json()["total"] == 1


def test_estimate_charge_and_402(make_server):
    server = make_server(shared=True)
    client = server.client(server.add_user("ann", credits=5))
    # cost = model cost (1) x count x ceil(w*h / native^2): 128x128 on a 64 px model is 4x.
    assert client.post("/api/estimate", json={"prompt": "a sun", **TINY}).json() == {"cost": 1, "balance": 5, "affordable": True}
    big = dict(TINY, width=128, height=128, count=2)
    assert client.post("/api/estimate", json={"prompt": "a sun", **big}).json()["cost"] == 8
    # An image the page will upload later is priced at the requested size.
    upload = {"prompt": "a sun", "mode": "img2img", "init_image": "upload:init_image", **TINY}
    assert client.post("/api/estimate", json=upload).json()["cost"] == 1
    refused = client.post("/api/jobs", json={"prompt": "a sun", **big})
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "insufficient_credits"
    assert "costs 8 credits" in refused.json()["error"]["message"] and "balance is 5" in refused.json()["error"]["message"]
    assert client.get("/api/jobs").json() == [], "a refused job never exists"
    accepted = client.post("/api/jobs", json={"prompt": "a sun", **TINY, "count": 2})
    assert accepted.status_code == 202 and accepted.json()["cost"] == 2
    assert client.get("/api/me").json()["credits"] == 3
    assert wait_job(client, accepted.json()["id"])["state"] == "succeeded"
    assert client.get("/api/me").json()["credits"] == 3


def test_concurrent_requests_never_overdraw(make_server, db_url):
    server = make_server(shared=True, db_url=db_url)
    key = server.add_user("ann", credits=9)
    body = {"prompt": "a blue circle", **TINY, "count": 2}  # 2 credits each

    def post(_):
        with server.client(key) as client:
            return client.post("/api/jobs", json=body)

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] * 4 + [402] * 16, statuses
    accepted = {r.json()["id"] for r in responses if r.status_code == 202}

    client = server.client(key)
    for job_id in accepted:
        assert wait_job(client, job_id)["state"] == "succeeded"
    assert client.get("/api/me").json()["credits"] == 1

    db = Database(db_url)
    try:
        with db.read() as s:
            user = s.scalar(select(User).where(User.name == "ann"))
            charges = s.scalars(select(LedgerEntry).where(LedgerEntry.user_id == user.id, LedgerEntry.reason == "charge")).all()
            assert sorted(c.job_id for c in charges) == sorted(accepted), "each accepted job charged exactly once"
            assert all(c.delta == -2 and c.balance_after >= 0 for c in charges)
            assert sorted(c.balance_after for c in charges) == [1, 3, 5, 7]
            assert s.scalars(select(LedgerEntry).where(LedgerEntry.reason == "refund")).all() == []
            assert len(s.scalars(select(Job)).all()) == 4
            assert len(s.scalars(select(Image)).all()) == 8
    finally:
        db.dispose()


def test_failed_job_is_refunded(make_server):
    server = make_server(shared=True)
    client = server.client(server.add_user("ann", credits=4))
    # The init image is deleted after the job is accepted: the worker fails to read it.
    parent = wait_job(client, client.post("/api/jobs", json={"prompt": "a tree", **TINY}).json()["id"])
    server.service.queue.stop_worker()
    job = client.post("/api/jobs", json={"prompt": "a tree at night", "mode": "img2img",
                                         "init_image": f"image:{parent['images'][0]['id']}", **TINY}).json()
    assert client.get("/api/me").json()["credits"] == 2
    os.unlink(server.service.get(None, parent["id"]).images[0].path)
    server.service.queue.start_worker()
    failed = wait_job(client, job["id"])
    assert failed["state"] == "failed" and failed["refunded"] is True
    assert "init image" in failed["error"]
    assert client.get("/api/me").json()["credits"] == 3


def test_queue_down_answers_503_and_refunds(make_server):
    from serverkit import free_port

    server = make_server(shared=True, redis_url=f"redis://127.0.0.1:{free_port()}/0", worker=False)
    client = server.client(server.add_user("ann", credits=3))
    response = client.post("/api/jobs", json={"prompt": "a cat", **TINY})
    assert response.status_code == 503, response.text
    assert "refunded" in response.json()["error"]["message"]
    assert client.get("/api/me").json()["credits"] == 3
    [job] = client.get("/api/jobs").json()
    assert job["state"] == "failed" and job["refunded"] is True
