"""FastAPI dependencies: the request's session (committed at the edge) and the caller's key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.ratelimit import RateLimiter
from api.services.media_check import MediaInspector
from db.keys import find_active_key
from db.models import ApiKey
from scenecap.errors import Unauthenticated
from scenecap.settings import Settings
from worker.submit import JobQueue


def get_session(request: Request) -> Iterator[Session]:
    """One session per request: committed if the handler returns, rolled back if it raises."""
    with request.app.state.session_factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# scope="function": commit before the response is sent, so a client never reads what has not
# been committed yet, and a failed commit is an error response rather than a silent loss.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
bearer_scheme = HTTPBearer(auto_error=False, description="scenecap API key")


def get_api_key(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> ApiKey:
    """The caller's API key, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send your API key as 'Authorization: Bearer <key>'")
    key = find_active_key(session, credentials.credentials)
    if key is None:
        raise Unauthenticated("unknown or revoked API key")
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is not None:
        limiter.hit(key.id)
    # End the lookup's transaction: the connection goes back to the pool instead of waiting,
    # idle, while the request queues for its next thread.
    session.commit()
    return key


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_queue(request: Request) -> JobQueue:
    return request.app.state.queue


def get_inspector(request: Request) -> MediaInspector:
    return request.app.state.inspector


ApiKeyDep = Annotated[ApiKey, Depends(get_api_key)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
InspectorDep = Annotated[MediaInspector, Depends(get_inspector)]
