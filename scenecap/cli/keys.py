"""`scenecap keys create|list|update|revoke`: API keys in the configured database."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from db import jobs
from db.keys import create_key, keys_matching, list_keys, revoke_key, set_quota
from db.models import ApiKey
from scenecap.cli.database import transaction
from scenecap.core.errors import KeyAmbiguous, KeyNotFound


def issue_key(database_url: str, name: str, tokens_per_day: int | None = None) -> tuple[str, str]:
    """Create an API key; return (key, webhook secret)."""
    with transaction(database_url) as session:
        key, plaintext = create_key(session, name, tokens_per_day=tokens_per_day)
        return plaintext, key.webhook_secret


def create_command(
    database_url: str, name: str, *, as_json: bool, tokens_per_day: int | None = None
) -> int:
    plaintext, secret = issue_key(database_url, name, tokens_per_day)
    if as_json:
        print(json.dumps({"key": plaintext, "webhook_secret": secret}))
    else:
        print(f"API key for {name!r} (shown once, keep it safe):\n  {plaintext}")
        print(f"Webhook signing secret:\n  {secret}")
    return 0


def list_command(database_url: str, *, as_json: bool) -> int:
    with transaction(database_url) as session:
        rows = [_key_view(key) for key in list_keys(session)]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = ("id", "name", "prefix", "created", "last_used", "revoked", "tokens_per_day")
    table = [columns, *[tuple(str(row[c] or "-") for c in columns) for row in rows]]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    return 0


def update_command(database_url: str, prefix_or_id: str, *, tokens_per_day: int | None) -> int:
    """Set (or, with None, lift) a key's daily token quota; it holds for the key's next
    submission after KEY_CACHE_SECONDS."""
    with transaction(database_url) as session:
        key = _one_key(session, prefix_or_id)
        set_quota(session, key.id, tokens_per_day)
    quota = f"{tokens_per_day:,} tokens a day" if tokens_per_day is not None else "no quota"
    print(f"key {key.key_prefix}... ({key.name}): {quota}")
    return 0


def revoke_command(database_url: str, prefix_or_id: str, *, cancel_jobs: bool) -> int:
    """Revoke one key: its next request gets 401; its running jobs finish unless cancelled."""
    with transaction(database_url) as session:
        key = _one_key(session, prefix_or_id)
        revoked = revoke_key(session, key.id)
        cancelled = jobs.cancel_active_jobs(session, key.id) if cancel_jobs else 0
    state = "revoked" if revoked else "was already revoked"
    suffix = f"; {cancelled} running jobs cancelled" if cancel_jobs else ""
    print(f"key {key.key_prefix}... ({key.name}) {state}{suffix}")
    return 0


def _one_key(session: Session, prefix_or_id: str) -> ApiKey:
    found = keys_matching(session, prefix_or_id)
    if not found:
        raise KeyNotFound(f"no key has the id or prefix {prefix_or_id!r}")
    if len(found) > 1:
        raise KeyAmbiguous(
            f"{len(found)} keys start with {prefix_or_id!r}; give more of it or the id"
        )
    return found[0]


def _key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": str(key.id),
        "name": key.name,
        "prefix": key.key_prefix,
        "created": _minute(key.created_at),
        "last_used": _minute(key.last_used_at),
        "revoked": _minute(key.revoked_at),
        "tokens_per_day": key.tokens_per_day,
    }


def _minute(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else None
