"""Signed, expiring links to one job's report and live events, for people without the API key.

A token is `<expires>.<signature>`, the signature an HMAC of the job id and expiry keyed with
the owning API key's stored hash: only the server can mint one, and revoking the key voids
every link it shared.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

from sqlalchemy.orm import Session

from api.auth import Caller
from api.services.jobs import parse_job_id
from db import jobs
from db.keys import get_active_key
from db.models import Job
from scenecap.core.errors import JobNotFound, Unauthenticated


def sign(key_hash: str, job_id: uuid.UUID, expires_at: int) -> str:
    message = f"{job_id}.{expires_at}".encode()
    digest = hmac.new(key_hash.encode(), message, hashlib.sha256).digest()
    return f"{expires_at}.{base64.urlsafe_b64encode(digest).decode().rstrip('=')}"


def new_token(key: Caller, job_id: uuid.UUID, lifetime_seconds: int) -> tuple[str, int]:
    """A token for the key's job, valid for lifetime_seconds; and when it expires."""
    expires_at = int(time.time()) + lifetime_seconds
    return sign(key.key_hash, job_id, expires_at), expires_at


def job_for_token(session: Session, raw_id: str, token: str) -> Job:
    """The job a link token opens, or 401 (bad or expired token) / 404 (no such job)."""
    found = jobs.get_job(session, parse_job_id(raw_id))
    job = jobs.get_owned_job(session, found.id, found.api_key_id) if found else None
    if job is None:
        raise JobNotFound(f"no job {raw_id!r}")
    expires, _, _signature = token.partition(".")
    if not expires.isdigit():
        raise Unauthenticated("the link's token is malformed")
    key = get_active_key(session, job.api_key_id)
    if key is None or not hmac.compare_digest(sign(key.key_hash, job.id, int(expires)), token):
        raise Unauthenticated("the link's token is not valid for this job")
    if int(expires) < time.time():
        raise Unauthenticated("the link has expired; ask its owner for a new one")
    return job
