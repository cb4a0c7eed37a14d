"""Turn every error into the one JSON shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scenecap.core.errors import (
    DatabaseUnavailable,
    MalformedJson,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
    ScenecapError,
    ServiceUnavailable,
    ValidationFailed,
)
from scenecap.schemas import ErrorResponse

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


@dataclass
class BytesInFlight:
    """What the bodies this process is reading or holding cost (app.state.bodies_in_flight)."""

    held: int = 0


# What a body costs in memory while handled, in multiples of its size (measured: bench/abuse).
PARSED_COPIES = 3


class BodyLimits:
    """Bound what request bodies may cost the process before any route sees them.

    - Size: JSON bodies up to MAX_JSON_BYTES, except on the routes that take `data:` media
      (`media_paths`), which may reach MAX_REQUEST_BYTES as long as the rest of the body,
      less its `data:` strings, is within MAX_JSON_BYTES; 413 past either, whether or not
      Content-Length is sent.
    - Memory: what all bodies being read or held by this process cost is capped
      (BODY_BYTES_IN_FLIGHT); a body counts PARSED_COPIES times its size (its bytes, the
      parsed JSON's string, the media decoded from it). One that would pass the cap is
      refused with 503 and Retry-After.
    - Time: a body that stalls for UPLOAD_IDLE_SECONDS is refused with 408; a client that
      goes away is let go quietly.

    The body is read here first: JSON bodies are read whole by FastAPI anyway, and an error
    raised while FastAPI reads it would surface as a 400. Streamed routes (uploads) enforce
    their own limits.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_json_bytes: int,
        max_media_bytes: int,
        in_flight_bytes: int,
        idle_seconds: float,
        media_paths: tuple[str, ...] = (),
        streamed: tuple[str, ...] = (),
        in_flight: BytesInFlight | None = None,
    ) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes
        self.max_media_bytes = max_media_bytes
        self.in_flight_bytes = in_flight_bytes
        self.idle_seconds = idle_seconds
        self.media_paths = media_paths
        self.streamed = streamed
        self.in_flight = in_flight or BytesInFlight()

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
        limit = self.max_media_bytes if scope["path"] in self.media_paths else self.max_json_bytes
        size = int(declared) if declared is not None and declared.isdigit() else 0
        if size > limit:
            await error_response(_too_large(limit))(scope, receive, send)
            return
        size = 0  # bytes read so far; the body costs PARSED_COPIES times as much
        try:
            try:
                chunks: list[bytes] = []
                while True:
                    message = await self._next(receive)
                    if message["type"] != "http.request":
                        return  # the client went away: nothing to answer
                    chunk = message.get("body", b"")
                    if size + len(chunk) > limit:
                        raise _too_large(limit)
                    if self.in_flight.held + PARSED_COPIES * len(chunk) > self.in_flight_bytes:
                        raise ServiceUnavailable(
                            "the service is receiving too much at once; try again shortly",
                            {"retry_after": 2},
                        )
                    chunks.append(chunk)
                    size += len(chunk)
                    self.in_flight.held += PARSED_COPIES * len(chunk)
                    if not message.get("more_body", False):
                        break
                body = b"".join(chunks)
                del chunks
                if limit != self.max_json_bytes and _less_data(body) > self.max_json_bytes:
                    raise _too_large(self.max_json_bytes)
            except ScenecapError as refused:
                await error_response(refused, headers=_retry_after(refused))(scope, receive, send)
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
        finally:
            self.in_flight.held -= PARSED_COPIES * size

    async def _next(self, receive: Receive) -> Message:
        try:
            return await asyncio.wait_for(receive(), self.idle_seconds)
        except TimeoutError:
            raise RequestTimeout(
                f"the request body stalled for {self.idle_seconds:g} s",
                {"idle_seconds": self.idle_seconds},
            ) from None


# A JSON string holding a data: URI; base64 and percent-encoding have no quote or backslash.
_DATA_STRING = re.compile(rb'"data:[^"\\]*"')


def _less_data(body: bytes) -> int:
    """The body's size without its `data:` strings: what MAX_JSON_BYTES bounds."""
    return len(body) - sum(len(match) for match in _DATA_STRING.findall(body))


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"the request body is over {limit} bytes", {"limit": limit})


def _retry_after(error: ScenecapError) -> dict[str, str] | None:
    retry = error.details.get("retry_after")
    return {"Retry-After": str(retry)} if retry is not None else None
