"""How `scenecap api` serves the app: uvicorn, with a deadline on each request's headers.

uvicorn bounds idle keep-alive connections but not a request whose headers arrive a byte at
a time (slowloris): each such connection would be held forever. Here a connection must
finish a request's headers within HEADER_TIMEOUT_SECONDS of its first byte (or of being
opened), or it is closed.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from scenecap.core.settings import get_settings

PROTOCOL = "api.server:HeaderDeadlineProtocol"
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
# Blocks from this size up are mapped on their own and unmapped when freed.
MAPPED_FROM_BYTES = 1024 * 1024

log = logging.getLogger(__name__)


def _glibc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # another C library (musl, macOS): its allocator keeps its own rules
        return None


_LIBC = _glibc()


def return_freed_memory() -> None:
    """Give a big request's memory back to the system once it is handled.

    A large body, its parsed JSON and its decoded media are blocks of megabytes. glibc maps
    such blocks on their own, but raises that threshold (up to 32 MB) each time one is freed,
    after which they come from a heap it never shrinks: ten 30 MB bodies left 550 MB
    resident for good (bench/abuse.py). A fixed threshold keeps big blocks mapped, and
    unmapped as soon as they are freed."""
    if _LIBC is not None and not _LIBC.mallopt(M_MMAP_THRESHOLD, MAPPED_FROM_BYTES):
        log.warning("mallopt(M_MMAP_THRESHOLD) was refused; freed bodies may stay resident")


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol (httptools), closing connections whose headers stall. Named by
    import path in `scenecap api`: each of its worker processes imports it afresh."""

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        seconds = get_settings().header_timeout_seconds
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()
