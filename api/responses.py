"""Responses decided after the request's unit of work has committed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class DeferredResponse(Response):
    """Wait for something (a job to end) after the transaction commits, then answer.

    FastAPI commits the request's session, and so sends what it enqueued, when the handler
    returns; only then is the response called. This one awaits `decide()` on the event loop,
    holding neither a thread nor a database connection while it waits, and sends whatever
    response that gives.
    """

    def __init__(self, decide: Callable[[], Awaitable[Response]]) -> None:
        super().__init__()
        self.decide = decide

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.decide()
        await response(scope, receive, send)
