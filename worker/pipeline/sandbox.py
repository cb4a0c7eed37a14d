"""Run media decoding in a forked child with a memory cap and a deadline.

FFmpeg parses whatever bytes the internet sends. If a decoder crashes, hangs or balloons,
it takes the child with it, not the worker: the job fails with MEDIA_UNREADABLE and the
worker moves on (a crash that repeats on every delivery can no longer loop a job).

`os.fork` rather than multiprocessing: Celery's prefork children are daemonic, and
multiprocessing refuses to start children from those. The child only decodes, reports
over a pipe and leaves with `os._exit`; it never touches the database or the logging locks.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import resource
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from scenecap.errors import MediaUnreadable, ScenecapError
from scenecap.settings import Settings

T = TypeVar("T")
_LENGTH = 8  # bytes of each record's length prefix
Send = Callable[[Any], None]


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int  # address space of the child (RLIMIT_AS)
    seconds: float  # wall-clock deadline for the whole call

    @classmethod
    def of(cls, settings: Settings) -> SandboxLimits:
        return cls(settings.decode_memory_mb * 1024 * 1024, settings.decode_timeout_seconds)


def run_sandboxed(
    work: Callable[[Send], T],
    limits: SandboxLimits,
    on_message: Callable[[Any], None] | None = None,
) -> T:
    """Run work(send) in a child; messages it sends reach on_message here, as they come.

    Returns what work returns; re-raises a ScenecapError it raised; anything else that ends
    the child (a signal, running out of memory, the deadline) is MediaUnreadable.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (its coverage is its parent's observations)
        os.close(read_fd)
        _child(work, limits, write_fd)
    os.close(write_fd)
    try:
        return _parent(pid, read_fd, limits, on_message)
    finally:
        os.close(read_fd)


def _child(work: Callable[[Send], Any], limits: SandboxLimits, write_fd: int) -> None:
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Celery's handlers are the parent's
        faulthandler.disable()  # a crash here is reported by the parent, once
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with os.fdopen(write_fd, "wb") as out:

            def send(kind: str, value: Any) -> None:
                record = pickle.dumps((kind, value))
                out.write(len(record).to_bytes(_LENGTH, "big") + record)
                out.flush()

            try:
                send("result", work(lambda message: send("message", message)))
            except ScenecapError as exc:
                send("error", (type(exc), exc.message, exc.details))
            except MemoryError:
                send("error", (MediaUnreadable, "decoding needed more memory than allowed", {}))
            except BaseException as exc:
                send("error", (MediaUnreadable, f"decoding failed: {type(exc).__name__}", {}))
    except BaseException:
        code = 1
    os._exit(code)


def _parent(
    pid: int, read_fd: int, limits: SandboxLimits, on_message: Callable[[Any], None] | None
) -> Any:
    deadline = time.monotonic() + limits.seconds
    buffer = b""
    outcome: tuple[str, Any] | None = None
    try:
        while outcome is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([read_fd], [], [], remaining)[0]:
                raise MediaUnreadable(
                    f"decoding did not finish within {limits.seconds:g} s; the media was abandoned"
                )
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break  # The child is gone without an answer.
            buffer += chunk
            # Records are length-prefixed; a partial one waits for the next read.
            while outcome is None and len(buffer) >= _LENGTH:
                size = int.from_bytes(buffer[:_LENGTH], "big")
                if len(buffer) < _LENGTH + size:
                    break
                kind, value = pickle.loads(buffer[_LENGTH : _LENGTH + size])
                buffer = buffer[_LENGTH + size :]
                if kind == "message":
                    if on_message is not None:
                        on_message(value)
                else:
                    outcome = (kind, value)
    finally:
        status = _reap(pid, kill=outcome is None)
    if outcome is None:
        raise MediaUnreadable(f"the decoder crashed ({_describe(status)}); the media is unreadable")
    kind, value = outcome
    if kind == "error":
        error_class, message, details = value
        raise error_class(message, details)
    return value


def _reap(pid: int, *, kill: bool) -> int:
    if kill:
        with contextlib.suppress(ProcessLookupError):  # it may have just ended by itself
            os.kill(pid, signal.SIGKILL)
    _pid, status = os.waitpid(pid, 0)
    return status


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"
