"""History, favourites and saved prompts: per-user reads and edits of stored
images. Every function takes the acting user and treats another user's rows
as absent (404), never as forbidden, so ids cannot be probed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from sqlalchemy import delete, func, select

from ..jobs.errors import ImageNotFound, PromptNotFound
from ..jobs.service import ImageView, image_view
from .accounts import Account
from .db import Database, Favourite, Image, SavedPrompt


def list_images(
    db: Database,
    data_dir: Path,
    user: Account,
    *,
    q: str = "",
    model: Optional[str] = None,
    style: Optional[str] = None,
    favourite: Optional[bool] = None,
    limit: int = 24,
    offset: int = 0,
) -> tuple[list[ImageView], int]:
    conditions = [Image.user_id == user.id]
    if q.strip():
        conditions.append(db.search_condition(q))
    if model:
        conditions.append(Image.model == model)
    if style:
        conditions.append(Image.style == style)
    fav_ids = select(Favourite.image_id).where(Favourite.user_id == user.id)
    if favourite is True:
        conditions.append(Image.id.in_(fav_ids))
    elif favourite is False:
        conditions.append(Image.id.not_in(fav_ids))
    with db.read() as s:
        total = s.scalar(select(func.count()).select_from(Image).where(*conditions)) or 0
        rows = s.scalars(
            select(Image).where(*conditions).order_by(Image.created_at.desc(), Image.index_in_job).limit(limit).offset(offset)
        ).all()
        favs = set(s.scalars(fav_ids.where(Favourite.image_id.in_([r.id for r in rows]))).all())
        return [image_view(r, data_dir, r.id in favs) for r in rows], total


def get_image(db: Database, data_dir: Path, user: Account, image_id: str) -> ImageView:
    with db.read() as s:
        row = s.get(Image, image_id)
        if row is None or row.user_id != user.id:
            raise ImageNotFound(image_id)
        fav = s.get(Favourite, (user.id, image_id)) is not None
        return image_view(row, data_dir, fav)


def image_settings(db: Database, user: Account, image_id: str) -> dict:
    """The request that re-makes this image (its seed included)."""
    with db.read() as s:
        row = s.get(Image, image_id)
        if row is None or row.user_id != user.id:
            raise ImageNotFound(image_id)
        return json.loads(row.request_json)


def delete_image(db: Database, data_dir: Path, user: Account, image_id: str) -> None:
    with db.write() as s:
        row = s.get(Image, image_id)
        if row is None or row.user_id != user.id:
            raise ImageNotFound(image_id)
        path = data_dir / row.path
        s.execute(delete(Favourite).where(Favourite.image_id == image_id))
        db.unindex_image(s, image_id)
        s.delete(row)
    path.unlink(missing_ok=True)


def set_favourite(db: Database, user: Account, image_id: str, value: bool) -> bool:
    with db.write() as s:
        row = s.get(Image, image_id)
        if row is None or row.user_id != user.id:
            raise ImageNotFound(image_id)
        existing = s.get(Favourite, (user.id, image_id))
        if value and existing is None:
            s.add(Favourite(user_id=user.id, image_id=image_id))
        elif not value and existing is not None:
            s.delete(existing)
    return value


# --- saved prompts -------------------------------------------------------


def _prompt_dict(p: SavedPrompt) -> dict:
    return {
        "id": p.id,
        "name": p.name,
        "prompt": p.prompt,
        "negative_prompt": p.negative_prompt,
        "style": p.style,
        "settings": json.loads(p.settings_json or "{}"),
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def list_prompts(db: Database, user: Account) -> list[dict]:
    with db.read() as s:
        rows = s.scalars(
            select(SavedPrompt).where(SavedPrompt.user_id == user.id).order_by(SavedPrompt.updated_at.desc())
        ).all()
        return [_prompt_dict(p) for p in rows]


def _own_prompt(s, user: Account, prompt_id: str) -> SavedPrompt:
    row = s.get(SavedPrompt, prompt_id)
    if row is None or row.user_id != user.id:
        raise PromptNotFound(prompt_id)
    return row


def get_prompt(db: Database, user: Account, prompt_id: str) -> dict:
    with db.read() as s:
        return _prompt_dict(_own_prompt(s, user, prompt_id))


def save_prompt(db: Database, user: Account, fields: dict, prompt_id: Optional[str] = None) -> dict:
    with db.write() as s:
        if prompt_id is None:
            row = SavedPrompt(user_id=user.id, name=fields.get("name") or "untitled")
            s.add(row)
        else:
            row = _own_prompt(s, user, prompt_id)
        for key in ("name", "prompt", "negative_prompt", "style"):
            if key in fields and fields[key] is not None:
                setattr(row, key, fields[key])
        if fields.get("settings") is not None:
            row.settings_json = json.dumps(fields["settings"])
        row.updated_at = time.time()
        s.flush()
        return _prompt_dict(row)


def delete_prompt(db: Database, user: Account, prompt_id: str) -> None:
    with db.write() as s:
        s.delete(_own_prompt(s, user, prompt_id))
