"""Per-user settings of one API, stored as a JSON object per (user, scope).

Used for the AUTOMATIC1111 /options a client sets: A1111 keeps them in its
config.json across restarts, so a client that chose a model once keeps it."""

from __future__ import annotations

import json
from typing import Any

from ..jobs.errors import PayloadTooLarge
from .db import Database, UserSettings, now

#: A client posting its whole settings dict is normal (webuiapi does); a few MB is not.
MAX_SETTINGS_BYTES = 256 * 1024


def get_settings(db: Database, user_id: str, scope: str) -> dict[str, Any]:
    with db.read() as s:
        row = s.get(UserSettings, (user_id, scope))
        return json.loads(row.settings_json) if row else {}


def update_settings(db: Database, user_id: str, scope: str, update: dict[str, Any],
                    remove: tuple[str, ...] = ()) -> dict[str, Any]:
    """Merge `update` into the stored settings (dropping the keys in `remove`) in one
    transaction; returns the new settings."""
    with db.write() as s:
        row = s.get(UserSettings, (user_id, scope), with_for_update=True)
        current = json.loads(row.settings_json) if row else {}
        current.update(update)
        for key in remove:
            current.pop(key, None)
        text = json.dumps(current)
        if len(text.encode()) > MAX_SETTINGS_BYTES:
            raise PayloadTooLarge(f"settings would take {len(text.encode()) // 1024} KB; "
                                  f"the limit is {MAX_SETTINGS_BYTES // 1024} KB")
        if row is None:
            s.add(UserSettings(user_id=user_id, scope=scope, settings_json=text))
        else:
            row.settings_json, row.updated_at = text, now()
        return current
