"""The studio's database: SQLAlchemy 2 over SQLite (default, a file in the data
folder) or PostgreSQL (by URL). Same code both ways; the only dialect-specific
parts are prompt search (FTS5 on SQLite, ILIKE on PostgreSQL) and how SQLite
transactions take their write lock.

Tables: users, api_keys (sha256 of the key, never the key), credit_ledger (one
row per charge or refund), jobs (state + live progress, so every queue backend
and every worker machine report the same way), images (file path, seed, full
request, parent image for img2img/inpaint lineage), favourites, saved_prompts,
user_settings (per-user settings of an API, e.g. A1111's /options).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from contextlib import contextmanager
from typing import Iterator, Optional

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    #: None = unlimited (the implicit local user).
    credits: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: First characters of the key, to tell keys apart in listings.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float, default=now)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class LedgerEntry(Base):
    __tablename__ = "credit_ledger"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    job_id: Mapped[Optional[str]] = mapped_column(String(32), index=True, nullable=True)
    #: Negative for a charge, positive for a refund or grant.
    delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))  # charge | refund | grant
    #: Balance right after this entry; None for unlimited users.
    balance_after: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    source: Mapped[str] = mapped_column(String(16), default="api")
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    #: The request as shown to the user (image inputs as "image:<id>"/"input:<field>").
    request_json: Mapped[str] = mapped_column(Text)
    #: The request the worker runs (image inputs as files in the data folder).
    run_json: Mapped[str] = mapped_column(Text)
    parent_image_id: Mapped[Optional[str]] = mapped_column(String(32), nullable=True)
    cost: Mapped[int] = mapped_column(Integer, default=0)
    refunded: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    eta_seconds: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    preview_png: Mapped[Optional[bytes]] = mapped_column(LargeBinary, nullable=True)
    error: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    worker: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now, index=True)
    started_at: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    finished_at: Mapped[Optional[float]] = mapped_column(Float, nullable=True)


class Image(Base):
    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    job_id: Mapped[Optional[str]] = mapped_column(String(32), index=True, nullable=True)
    #: Lineage: the image this one was made from (img2img, inpaint, variation...).
    parent_id: Mapped[Optional[str]] = mapped_column(String(32), index=True, nullable=True)
    #: Relative to the data folder.
    path: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)  # seeds reach 2**32-1
    index_in_job: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[Optional[str]] = mapped_column(String(200), index=True, nullable=True)
    style: Mapped[Optional[str]] = mapped_column(String(100), index=True, nullable=True)
    mode: Mapped[str] = mapped_column(String(16), default="txt2img")
    prompt: Mapped[str] = mapped_column(Text, default="")
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    #: AUTOMATIC1111 infotext, as written into the PNG.
    parameters: Mapped[str] = mapped_column(Text, default="")
    #: The request as run (seed drawn), to reuse its settings.
    request_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=now, index=True)


class Favourite(Base):
    __tablename__ = "favourites"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    image_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class SavedPrompt(Base):
    __tablename__ = "saved_prompts"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prompt: Mapped[str] = mapped_column(Text, default="")
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    style: Mapped[Optional[str]] = mapped_column(String(100), nullable=True)
    #: Other request fields to restore (JSON object).
    settings_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class UserSettings(Base):
    """Per-user settings of one API (scope), e.g. the AUTOMATIC1111 /options a
    client set, kept across restarts as A1111 keeps its config.json."""
    __tablename__ = "user_settings"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(50), primary_key=True)
    settings_json: Mapped[str] = mapped_column(Text, default="{}")
    updated_at: Mapped[float] = mapped_column(Float, default=now)


Index("ix_jobs_state_created", Job.state, Job.created_at)
Index("ix_images_user_created", Image.user_id, Image.created_at)

# SQLite: the FTS5 index over prompts; rowid-less, keyed by image id.
_FTS_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS image_search USING fts5("
    "image_id UNINDEXED, user_id UNINDEXED, body, tokenize='unicode61')"
)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def make_key() -> str:
    return "isk_" + secrets.token_urlsafe(32)


class Database:
    """Engine + sessions. `write()` is for transactions that change rows: on
    SQLite it takes the write lock up front (BEGIN IMMEDIATE), so concurrent
    writers queue on the busy timeout instead of failing with 'database is
    locked' when a read lock cannot be upgraded."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: Engine = create_engine(
                url,
                echo=echo,
                connect_args={"check_same_thread": False, "timeout": 60},
            )
            self._install_sqlite_hooks(self.engine)
        else:
            self.engine = create_engine(url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(sqlite_immediate=True), expire_on_commit=False
        )
        self.has_fts = False

    @staticmethod
    def _install_sqlite_hooks(engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own
            # transaction handling would defer it past our first statement).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            if conn.get_execution_options().get("sqlite_immediate"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")

    def create_all(self) -> None:
        Base.metadata.create_all(self.engine)
        if self.is_sqlite:
            with self.engine.begin() as conn:
                try:
                    conn.exec_driver_sql(_FTS_DDL)
                    self.has_fts = True
                except Exception:  # SQLite built without FTS5: fall back to LIKE
                    self.has_fts = False

    def drop_all(self) -> None:
        if self.is_sqlite:
            with self.engine.begin() as conn:
                conn.exec_driver_sql("DROP TABLE IF EXISTS image_search")
        Base.metadata.drop_all(self.engine)

    @contextmanager
    def read(self) -> Iterator[Session]:
        # Closing (not rolling back) ends the transaction and keeps loaded
        # rows usable after the block.
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self._write() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()

    # --- prompt search -------------------------------------------------

    def index_image(self, session: Session, image: Image) -> None:
        if self.has_fts:
            session.execute(
                text("INSERT INTO image_search(image_id, user_id, body) VALUES (:i, :u, :b)"),
                {"i": image.id, "u": image.user_id, "b": f"{image.prompt}\n{image.style or ''}"},
            )

    def unindex_image(self, session: Session, image_id: str) -> None:
        if self.has_fts:
            session.execute(text("DELETE FROM image_search WHERE image_id = :i"), {"i": image_id})

    def search_condition(self, query: str):
        """A WHERE clause on Image matching every word of `query` in the prompt
        (prefix match), or None for an empty query."""
        words = [w for w in query.replace('"', " ").split() if w]
        if not words:
            return None
        if self.has_fts:
            # Each word quoted (so FTS syntax in user text is inert) and prefix-matched.
            match = " ".join('"' + w + '"*' for w in words)
            sub = text("SELECT image_id FROM image_search WHERE image_search MATCH :match").bindparams(
                match=match
            )
            return Image.id.in_(sub.columns(image_id=String).subquery().select())
        from sqlalchemy import and_, or_

        conds = []
        for w in words:
            pattern = "%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conds.append(or_(Image.prompt.ilike(pattern, escape="\\"), Image.style.ilike(pattern, escape="\\")))
        return and_(*conds)
