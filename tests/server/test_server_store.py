"""The store on both databases: prompt search (FTS5 on SQLite, ILIKE on
PostgreSQL), atomic charges from many threads, refunds, the OpenAPI page."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import select

from imagestudio.jobs.errors import InsufficientCredits
from imagestudio.store import accounts, gallery
from imagestudio.store.db import Database, Image, LedgerEntry, User


@pytest.fixture
def db(db_url):
    database = Database(db_url)
    database.create_all()
    yield database
    database.dispose()


def _image(db, user, prompt, style=None):
    row = Image(user_id=user.id, path=f"images/{uuid.uuid4().hex}.png", width=64, height=64, seed=2**32 - 1,
                prompt=prompt, style=style, request_json="{}", model="tiny")
    with db.write() as s:
        s.add(row)
        s.flush()
        db.index_image(s, row)
    return row.id


def test_prompt_search_on_both_databases(db, tmp_path):
    ann, _ = accounts.add_user(db, "ann", 0)
    bob, _ = accounts.add_user(db, "bob", 0)
    boat = _image(db, ann, "A blue boat on the sea, (detailed:1.2)")
    _image(db, ann, "a red house at night", style="Neon Noir")
    _image(db, bob, "a blue boat too")

    def found(q, user=ann):
        return {i.prompt for i in gallery.list_images(db, tmp_path, user, q=q)[0]}

    assert db.has_fts == db.is_sqlite
    assert found("blue boat") == {"A blue boat on the sea, (detailed:1.2)"}
    assert found("BOAT") == found("blue"), "case-insensitive"
    assert found("neon") == {"a red house at night"}, "style names are searchable"
    assert found("detail") == {"A blue boat on the sea, (detailed:1.2)"}, "prefixes match"
    assert found("boat house") == set(), "every word must match"
    assert found('" OR 1=1 --') == set() and found("%") == set() and found("*") == set()
    assert found("blue", bob) == {"a blue boat too"}
    gallery.delete_image(db, tmp_path, ann, boat)
    assert found("boat") == set()


def test_charges_from_many_threads_never_overdraw(db):
    ann, _ = accounts.add_user(db, "ann", 10)
    outcomes = []
    barrier = threading.Barrier(20)

    def charge(i):
        barrier.wait()
        try:
            with db.write() as s:
                accounts.charge(s, ann.id, 3, f"job{i}")
            outcomes.append("ok")
        except InsufficientCredits as err:
            outcomes.append(err.balance)

    threads = [threading.Thread(target=charge, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 3
    assert all(o == "ok" or o in (1, 4, 7) for o in outcomes)
    with db.read() as s:
        assert s.get(User, ann.id).credits == 1
        ledger = s.scalars(select(LedgerEntry).where(LedgerEntry.reason == "charge")).all()
        assert sorted(e.balance_after for e in ledger) == [1, 4, 7]
    with db.write() as s:
        accounts.refund(s, ann.id, 3, "job0")
    assert accounts.get_account(db, ann.id).credits == 4


def test_unlimited_local_user_is_charged_in_the_ledger_only(db):
    local = accounts.local_account(db)
    assert local.unlimited and accounts.local_account(db).id == local.id
    with db.write() as s:
        assert accounts.charge(s, local.id, 1000, "big") is None
    with db.read() as s:
        assert s.scalars(select(LedgerEntry.delta).where(LedgerEntry.job_id == "big")).all() == [-1000]


def test_openapi_docs(local_server):
    client = local_server.client()
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    for path in ("/api/jobs", "/api/jobs/{job_id}/events", "/api/images", "/api/estimate", "/api/me",
                 "/api/prompts", "/api/images/{image_id}/settings"):
        assert path in schema["paths"], path
    body = schema["paths"]["/api/jobs"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "GenerationRequest" in schema["components"]["schemas"]


def test_models_samplers_styles_and_saved_prompts(local_server):
    client = local_server.client()
    models = {m["name"]: m for m in client.get("/api/models").json()}
    assert models["tiny"]["cost"] == 1 and models["tiny"]["description"] and "path" not in models["tiny"]
    assert "Euler a" in client.get("/api/samplers").json()
    styles = client.get("/api/styles").json()
    assert styles and all({"name", "description", "preview_url"} <= set(s) for s in styles)
    for style in styles:
        if style["preview_url"]:
            assert client.get(style["preview_url"]).status_code == 200

    created = client.post("/api/prompts", json={"name": "boats", "prompt": "a blue boat", "settings": {"steps": 4}})
    assert created.status_code == 201
    pid = created.json()["id"]
    assert client.put(f"/api/prompts/{pid}", json={"prompt": "a red boat"}).json()["prompt"] == "a red boat"
    assert client.get(f"/api/prompts/{pid}").json()["settings"] == {"steps": 4}
    assert [p["name"] for p in client.get("/api/prompts").json()] == ["boats"]
    assert client.delete(f"/api/prompts/{pid}").status_code == 204
    assert client.get(f"/api/prompts/{pid}").status_code == 404


def test_user_settings_merge_persist_and_stay_per_user(db, db_url):
    from imagestudio.jobs.errors import PayloadTooLarge
    from imagestudio.store.settings import MAX_SETTINGS_BYTES, get_settings, update_settings

    ann, _ = accounts.add_user(db, "ann", 0)
    bob, _ = accounts.add_user(db, "bob", 0)
    assert get_settings(db, ann.id, "a1111") == {}
    update_settings(db, ann.id, "a1111", {"sd_model_checkpoint": "tiny", "samples_format": "png"})
    update_settings(db, ann.id, "a1111", {"samples_format": "jpg"}, remove=("sd_model_checkpoint",))
    update_settings(db, bob.id, "a1111", {"sd_model_checkpoint": "other"})
    with pytest.raises(PayloadTooLarge, match="limit is 256 KB"):
        update_settings(db, ann.id, "a1111", {"junk": "x" * MAX_SETTINGS_BYTES})
    fresh = Database(db_url)  # another process / a restart sees the same rows
    try:
        assert get_settings(fresh, ann.id, "a1111") == {"samples_format": "jpg"}  # nothing lost to the refusal
        assert get_settings(fresh, bob.id, "a1111") == {"sd_model_checkpoint": "other"}
        assert get_settings(fresh, ann.id, "other-api") == {}
    finally:
        fresh.dispose()
