"""API key repository: keys are stored hashed; the plaintext is shown once at creation."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from db.models import ApiKey
from db.session import rowcount
from scenecap.core.enums import as_utc, utcnow

KEY_PREFIX = "sc_"
# Writing last_used_at on every request would turn each read into a write; a minute is
# precise enough for "is this key still in use?".
LAST_USED_RESOLUTION = timedelta(minutes=1)


# What create_key makes: the prefix and 43 characters of URL-safe base64 (32 random bytes).
_WELL_FORMED = re.compile(r"sc_[A-Za-z0-9_-]{43}")


def well_formed(plaintext: str) -> bool:
    """Whether this could be a key at all (anything else is refused without a lookup)."""
    return _WELL_FORMED.fullmatch(plaintext) is not None


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_key(
    session: Session, name: str, *, tokens_per_day: int | None = None
) -> tuple[ApiKey, str]:
    """Create an API key with its webhook secret; return the row and the plaintext key."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        key_hash=hash_key(plaintext),
        key_prefix=plaintext[:10],
        webhook_secret=new_webhook_secret(),
        tokens_per_day=tokens_per_day,
    )
    session.add(key)
    session.flush()
    return key, plaintext


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def rotate_webhook_secret(key: ApiKey, grace_seconds: float) -> str:
    """Give the key a new signing secret; the old one still signs until the grace ends."""
    key.previous_webhook_secret = key.webhook_secret
    key.previous_secret_expires_at = utcnow() + timedelta(seconds=grace_seconds)
    key.webhook_secret = new_webhook_secret()
    return key.webhook_secret


def find_active_key(session: Session, key_hash: str) -> ApiKey | None:
    """Return the unrevoked key with this hash, if any."""
    return session.scalar(
        select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    )


def get_active_key(session: Session, key_id: uuid.UUID) -> ApiKey | None:
    """Return the key with this id unless it was revoked."""
    return session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)))


def mark_used(session: Session, key_id: uuid.UUID, last_used_at: datetime | None) -> None:
    """Record that the key was used now, unless that was recorded less than a minute ago."""
    now = utcnow()
    if last_used_at is not None and now - as_utc(last_used_at) < LAST_USED_RESOLUTION:
        return
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, oldest first (revoked ones included)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def keys_matching(session: Session, prefix_or_id: str) -> list[ApiKey]:
    """Keys whose id is this UUID, or whose key starts with this prefix (at least 6 chars)."""
    conditions = []
    with contextlib.suppress(ValueError):
        conditions.append(ApiKey.id == uuid.UUID(prefix_or_id))
    if len(prefix_or_id) >= 6:
        # The stored prefix holds the key's first 10 characters; a longer argument is a
        # whole key, which matches its prefix and its hash.
        conditions.append(ApiKey.key_prefix.startswith(prefix_or_id[:10], autoescape=True))
    if not conditions:
        return []
    found = list(session.scalars(select(ApiKey).where(or_(*conditions))))
    if len(prefix_or_id) > 10:
        digest = hash_key(prefix_or_id)
        found = [k for k in found if k.key_hash == digest or str(k.id) == prefix_or_id]
    return found


def set_quota(session: Session, key_id: uuid.UUID, tokens_per_day: int | None) -> None:
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(tokens_per_day=tokens_per_day))


def revoke_key(session: Session, key_id: uuid.UUID) -> bool:
    """Revoke the key; False if it was revoked already."""
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return rowcount(result) == 1
