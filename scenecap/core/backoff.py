"""Talking to a model server (vision, speech, or the model that answers questions): its
pooled client, which answers are worth another try, how long to wait before it, and the loop
that does both."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import httpx

from scenecap.core.errors import ServiceUnavailable

log = logging.getLogger(__name__)
# Timeouts, conflicts, rate limits and the server's own failures pass; other answers do not.
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF = 30.0


def delay_before(attempt: int, response: httpx.Response | None) -> float:
    """Seconds to wait before attempt `attempt + 1`: the server's Retry-After when it gave
    one, else exponential backoff with full jitter."""
    if response is not None:
        try:
            return min(MAX_BACKOFF, max(0.0, float(response.headers.get("retry-after", ""))))
        except ValueError:
            pass
    return random.uniform(0, min(MAX_BACKOFF, 0.5 * 2**attempt))


def model_client(
    base_url: str,
    api_key: str,
    *,
    timeout: float,
    max_connections: int | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """One pooled async client for a model server: its base URL, its bearer token if any,
    no proxy settings from the environment (the URL was checked as configured)."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
        timeout=httpx.Timeout(timeout, connect=10.0),
        limits=httpx.Limits(max_connections=max_connections),
        trust_env=False,
        transport=transport,
    )


def _accept_or_retry(response: httpx.Response) -> None:
    """The default: every failed answer is judged by its status alone."""


async def send_retrying(
    send: Callable[[], Awaitable[httpx.Response]],
    attempts: int,
    *,
    unavailable: type[ServiceUnavailable],
    server: str,
    refused: Callable[[httpx.Response], None] = _accept_or_retry,
) -> tuple[httpx.Response, int]:
    """The first successful answer, and how many attempts failed before it. Transport
    errors and RETRY_STATUS answers are tried again after `delay_before`; `refused` may raise
    for a failed answer that means something of its own; any other answer, or running out
    of attempts, raises `unavailable` naming the `server`."""
    problem = ""
    for attempt in range(attempts):
        failed: httpx.Response | None = None
        try:
            response = await send()
        except httpx.TransportError as exc:
            problem = type(exc).__name__
        else:
            if response.is_success:
                return response, attempt
            refused(response)
            if response.status_code not in RETRY_STATUS:
                # Its body goes to the log only: it may quote the request or the server's setup.
                log.warning(
                    "%s answered HTTP %d: %s", server, response.status_code, response.text[:500]
                )
                raise unavailable(
                    f"{server} answered HTTP {response.status_code}",
                    {"status_code": response.status_code},
                )
            problem, failed = f"HTTP {response.status_code}", response
        if attempt + 1 < attempts:
            await asyncio.sleep(delay_before(attempt, failed))
    raise unavailable(
        f"{server} unavailable after {attempts} attempts (last: {problem})",
        {"attempts": attempts},
    )
