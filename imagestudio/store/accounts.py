"""Users, API keys and credit balances: the rows behind shared mode.

Credits change only through `charge`, `refund` and `grant`, each of which
writes its ledger row in the same transaction as the balance change. A charge
is one `UPDATE ... WHERE credits >= cost`, so two concurrent charges can never
take a balance below zero on SQLite or PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..jobs.errors import InsufficientCredits, UserNotFound
from .db import ApiKey, Database, LedgerEntry, User, hash_key, make_key

LOCAL_USER = "local"


@dataclass(frozen=True)
class Account:
    """The user a request acts for (a plain value, safe to pass between threads)."""

    id: str
    name: str
    #: None = unlimited.
    credits: Optional[int]

    @property
    def unlimited(self) -> bool:
        return self.credits is None


def _account(user: User) -> Account:
    return Account(id=user.id, name=user.name, credits=user.credits)


def local_account(db: Database) -> Account:
    """The implicit user of local mode (unlimited credits), created on first use."""
    with db.write() as s:
        user = s.scalar(select(User).where(User.name == LOCAL_USER))
        if user is None:
            user = User(name=LOCAL_USER, credits=None)
            s.add(user)
            s.flush()
        return _account(user)


def add_user(db: Database, name: str, credits: int = 0) -> tuple[Account, str]:
    """Create a user with a first API key; returns (account, key). The key is
    shown once: only its sha256 is stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("a user name needs 1-100 characters")
    if credits < 0:
        raise ValueError("credits cannot be negative")
    with db.write() as s:
        if s.scalar(select(User).where(User.name == name)) is not None:
            raise ValueError(f"user {name!r} exists already")
        user = User(name=name, credits=credits)
        s.add(user)
        s.flush()
        if credits:
            s.add(LedgerEntry(user_id=user.id, delta=credits, reason="grant", balance_after=credits))
        key = _new_key(s, user.id)
        return _account(user), key


def _new_key(s: Session, user_id: str) -> str:
    key = make_key()
    s.add(ApiKey(user_id=user_id, key_hash=hash_key(key), prefix=key[:10]))
    return key


def new_key(db: Database, name: str) -> str:
    with db.write() as s:
        user = _user(s, name)
        return _new_key(s, user.id)


def _user(s: Session, name: str) -> User:
    user = s.scalar(select(User).where(User.name == name))
    if user is None:
        raise UserNotFound(name)
    return user


def grant(db: Database, name: str, amount: int) -> Account:
    """Add (or, with a negative amount, remove down to zero at most) credits."""
    with db.write() as s:
        user = _user(s, name)
        if user.credits is None:
            return _account(user)
        new_balance = max(0, user.credits + amount)
        delta = new_balance - user.credits
        s.execute(update(User).where(User.id == user.id).values(credits=User.credits + delta))
        s.add(LedgerEntry(user_id=user.id, delta=delta, reason="grant", balance_after=new_balance))
        s.flush()
        s.refresh(user)
        return _account(user)


def list_users(db: Database) -> list[dict]:
    with db.read() as s:
        rows = []
        for user in s.scalars(select(User).order_by(User.name)):
            keys = s.scalars(select(ApiKey).where(ApiKey.user_id == user.id, ApiKey.revoked.is_(False))).all()
            rows.append(
                {"name": user.name, "credits": user.credits, "keys": [k.prefix + "…" for k in keys]}
            )
        return rows


def account_for_key(db: Database, key: str) -> Optional[Account]:
    with db.read() as s:
        user = s.scalar(
            select(User)
            .join(ApiKey, ApiKey.user_id == User.id)
            .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked.is_(False))
        )
        return _account(user) if user else None


def get_account(db: Database, user_id: str) -> Account:
    with db.read() as s:
        user = s.get(User, user_id)
        if user is None:
            raise UserNotFound(user_id)
        return _account(user)


# --- credits, inside a caller's transaction --------------------------------


def charge(s: Session, user_id: str, cost: int, job_id: str) -> Optional[int]:
    """Take `cost` credits atomically or raise InsufficientCredits. Returns the
    new balance (None for unlimited users, whose charge is still recorded)."""
    user = s.get(User, user_id)
    if user is None:
        raise UserNotFound(user_id)
    if user.credits is None:
        s.add(LedgerEntry(user_id=user_id, job_id=job_id, delta=-cost, reason="charge", balance_after=None))
        return None
    result = s.execute(
        update(User)
        .where(User.id == user_id, User.credits >= cost)
        .values(credits=User.credits - cost)
        .returning(User.credits)
    ).first()
    if result is None:
        s.expire(user)
        balance = s.scalar(select(User.credits).where(User.id == user_id)) or 0
        raise InsufficientCredits(cost, balance)
    s.add(LedgerEntry(user_id=user_id, job_id=job_id, delta=-cost, reason="charge", balance_after=result[0]))
    return result[0]


def refund(s: Session, user_id: str, cost: int, job_id: str) -> None:
    """Give a job's credits back (the caller makes sure this happens once)."""
    balance = s.execute(
        update(User)
        .where(User.id == user_id, User.credits.is_not(None))
        .values(credits=User.credits + cost)
        .returning(User.credits)
    ).first()
    s.add(
        LedgerEntry(
            user_id=user_id, job_id=job_id, delta=cost, reason="refund",
            balance_after=balance[0] if balance else None,
        )
    )
