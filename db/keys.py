"""API key repository: keys are stored hashed; the plaintext is shown once at creation."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ApiKey, utcnow

KEY_PREFIX = "sc_"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_key(session: Session, name: str) -> tuple[ApiKey, str]:
    """Create an API key with its webhook secret; return the row and the plaintext key."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        key_hash=hash_key(plaintext),
        key_prefix=plaintext[:10],
        webhook_secret=new_webhook_secret(),
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


def find_active_key(session: Session, plaintext: str) -> ApiKey | None:
    """Return the unrevoked key matching plaintext, if any."""
    return session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext), ApiKey.revoked_at.is_(None))
    )


def get_active_key(session: Session, key_id: uuid.UUID) -> ApiKey | None:
    """Return the key with this id unless it was revoked."""
    return session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)))
