"""FastAPI dependencies: the request's unit of work (one session, committed at the edge) and
the calling API key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.auth import Caller
from api.services.media_check import MediaInspector
from scenecap.core.errors import Unauthenticated
from scenecap.core.settings import Settings
from scenecap.store import MediaStore


def get_session(request: Request) -> Iterator[Session]:
    """The request's one transaction: committed if the handler returns (then the work it
    enqueued is sent), rolled back if it raises (and that work is dropped)."""
    with request.app.state.session_factory() as session:
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        # Outside the try: if sending fails after the commit (a broker outage), the error
        # reaches the client as it is; there is nothing left to roll back.
        session.commit()


# scope="function": commit before the response is sent, so a client never reads what has not
# been committed yet, and a failed commit is an error response rather than a silent loss.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
bearer_scheme = HTTPBearer(auto_error=False, description="scenecap API key")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def get_caller(request: Request, credentials: Credentials) -> Caller:
    """The caller's API key, or 401; then one request counted against its rate limit."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send your API key as 'Authorization: Bearer <key>'")
    caller = await request.app.state.keys.caller(credentials.credentials)
    if caller is None:
        raise Unauthenticated("unknown or revoked API key")
    if request.app.state.rate_limiter is not None:
        await request.app.state.rate_limiter.hit(caller.id)
    return caller


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_inspector(request: Request) -> MediaInspector:
    return request.app.state.inspector


async def get_store(request: Request) -> MediaStore:
    return request.app.state.store


CallerDep = Annotated[Caller, Depends(get_caller)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
InspectorDep = Annotated[MediaInspector, Depends(get_inspector)]
StoreDep = Annotated[MediaStore, Depends(get_store)]
