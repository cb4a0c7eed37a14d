"""Signed, expiring links to one job's report and live events, for people without the API key
(docs/api.md, "Sharing").

A token carries its purpose, the job, the key that shared it and its expiry, signed with the
server's SCENECAP_SECRET_KEY (HMAC-SHA256). It is checked before any database lookup, so a
bad token on a real job and a token for no job answer alike; a good one still needs its key
unrevoked (revoking a key voids every link it shared) and its job present.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import time
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from sqlalchemy.orm import Session

from db import jobs
from db.keys import get_active_key
from scenecap.core.errors import JobNotFound, Unauthenticated
from scenecap.core.settings import DEV_HOME, Settings

VIEW = 1  # the report, its events and its pictures
_LAYOUT = struct.Struct(">B16s16sQ")  # purpose, job, key, expiry (unix seconds)
MAX_TOKEN_CHARS = 200


@dataclass(frozen=True)
class Grant:
    """What a valid token lets its holder see."""

    job_id: uuid.UUID
    api_key_id: uuid.UUID
    expires_at: int


def signing_key(settings: Settings) -> bytes:
    """SCENECAP_SECRET_KEY, or (outside production, where it is required) a random key kept
    in the dev home, so the links of a `scenecap dev` survive its restarts."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    return _dev_key(DEV_HOME / "secret_key")


@cache
def _dev_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def new_token(
    key: bytes, api_key_id: uuid.UUID, job_id: uuid.UUID, lifetime_seconds: int
) -> tuple[str, int]:
    """A view token for the key's job, valid for lifetime_seconds; and when it expires."""
    expires_at = int(time.time()) + lifetime_seconds
    payload = _LAYOUT.pack(VIEW, job_id.bytes, api_key_id.bytes, expires_at)
    return f"{_b64(payload)}.{_b64(_mac(key, payload))}", expires_at


def check_token(key: bytes, token: str, job_id: uuid.UUID) -> Grant:
    """The grant a token gives for this job, or 401: checked without the database."""
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise Unauthenticated("the link's token is not valid")
    body, _, mac = token.partition(".")
    try:
        payload, signature = _unb64(body), _unb64(mac)
    except (binascii.Error, ValueError):
        raise Unauthenticated("the link's token is not valid") from None
    if len(payload) != _LAYOUT.size or not hmac.compare_digest(_mac(key, payload), signature):
        raise Unauthenticated("the link's token is not valid")
    purpose, job, owner, expires_at = _LAYOUT.unpack(payload)
    if purpose != VIEW or job != job_id.bytes:
        raise Unauthenticated("the link's token is not valid")
    if expires_at < time.time():
        raise Unauthenticated("the link has expired; ask its owner for a new one")
    return Grant(job_id, uuid.UUID(bytes=owner), expires_at)


def check_grant(session: Session, grant: Grant) -> None:
    """A checked token still opens its job: 401 once its key is revoked, 404 once the job
    is gone."""
    if get_active_key(session, grant.api_key_id) is None:
        raise Unauthenticated("the link's key was revoked")
    if not jobs.is_owned(session, grant.job_id, grant.api_key_id):
        raise JobNotFound(f"no job {grant.job_id}")


def fingerprint(token: str) -> str:
    """A short name for a token (its rate limit's), which tells nothing of the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:24]


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
