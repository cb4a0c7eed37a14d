"""Turn every error into the one JSON shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.schemas import ErrorResponse
from scenecap.core.errors import (
    DatabaseUnavailable,
    MalformedJson,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    RequestTooLarge,
    ScenecapError,
    ServiceUnavailable,
    ValidationFailed,
)

log = logging.getLogger(__name__)


def error_response(error: ScenecapError, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    if error.status_code == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    if isinstance(error, RateLimited):
        headers = {**(headers or {}), "Retry-After": str(error.retry_after)}
    return JSONResponse(body, status_code=error.status_code, headers=headers)


def responses(
    *errors: type[ScenecapError], json_beside: bool = False
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the errors a route can return.

    `json_beside`: the route answers in another media type (HTML, SSE), so name the errors'
    JSON explicitly; FastAPI would otherwise document them in the route's own type.
    """
    documented: dict[int | str, dict[str, Any]] = {}
    json_error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for error in errors:
        entry = documented.setdefault(
            error.status_code,
            {"description": "", "content": json_error}
            if json_beside
            else {"model": ErrorResponse, "description": ""},
        )
        entry["description"] = " / ".join(filter(None, [entry["description"], error.code]))
    return documented


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = list(exc.errors())
    if any(p.get("type") == "json_invalid" for p in problems):
        return error_response(MalformedJson("the request body is not valid JSON"))
    return error_response(validation_failed(problems, skip=1))  # the location's "body"


def validation_failed(problems: Sequence[Any], *, skip: int = 0) -> ValidationFailed:
    """Pydantic's problems as our 422: each field (its location less `skip` parts), message
    and type in details.errors, the first in the message."""
    details = [
        {
            "field": ".".join(str(part) for part in p.get("loc", ())[skip:]) or "body",
            "message": p.get("msg", ""),
            "type": p.get("type", ""),
        }
        for p in problems
    ]
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    return ValidationFailed(f"{first['field']}: {first['message']}", {"errors": details})


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response(NotFound("no such endpoint"))
    if exc.status_code == 405:
        return error_response(MethodNotAllowed("method not allowed on this endpoint"))
    body = {"error": {"code": f"HTTP_{exc.status_code}", "message": str(exc.detail), "details": {}}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def _scenecap_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ScenecapError)
    if exc.status_code >= 500:
        log.warning("request failed: %s %s", exc.code, exc.message)
    return error_response(exc)


def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        log.warning("database unavailable: %s", exc.orig)
        return error_response(DatabaseUnavailable("the database is unavailable; try again shortly"))
    raise exc


def _pool_exhausted(_request: Request, exc: Exception) -> JSONResponse:
    # Every pooled connection stayed busy past the pool timeout: overload, not a bug.
    log.warning("database connection pool exhausted: %s", exc)
    busy = ServiceUnavailable("the service is overloaded; try again shortly")
    return error_response(busy, headers={"Retry-After": "5"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ScenecapError, _scenecap_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _pool_exhausted)


class BodySizeLimit:
    """Refuse request bodies over max_bytes with 413, whether or not Content-Length is sent.

    The body is read here first: JSON bodies are read whole by FastAPI anyway, and an error
    raised while FastAPI reads it would surface as a 400.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, streamed: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Paths that stream their bodies and enforce a limit of their own (uploads).
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        no_body = declared is None and b"transfer-encoding" not in headers  # a GET
        if no_body or scope["path"] in self.streamed:
            await self.app(scope, receive, send)
            return
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # The client went away; let the app see the disconnect.
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            RequestTooLarge(
                f"the request body is over {self.max_bytes} bytes", {"limit": self.max_bytes}
            )
        )
        await response(scope, receive, send)
