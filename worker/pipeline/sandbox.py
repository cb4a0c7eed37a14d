"""Run media decoding in a forked child: limited, isolated, and answering in plain data.

FFmpeg parses whatever bytes the internet sends. If a decoder crashes, hangs or balloons,
it takes the child with it, not the worker: the job fails with MEDIA_UNREADABLE and the
worker moves on (a crash that repeats on every delivery can no longer loop a job).

What the child gets (docs/architecture.md, "The decode sandbox"): an address-space cap and a
wall-clock deadline; no core dumps and no file writes; none of the worker's descriptors
(database and broker sockets included) but its reply pipe; an environment without secrets;
no network where the kernel allows a new network namespace; death with its parent. Its
reply is JSON plus raw byte blobs whose sizes are checked, never a pickle: a decoder taken
over by hostile media can send wrong answers, but not code. What it still has: a copy of
the worker's memory (fork), read access to the worker's files, and every system call.

`os.fork` rather than multiprocessing: Celery's prefork children are daemonic, and
multiprocessing refuses to start children from those. The child only decodes, reports
over a pipe and leaves with `os._exit`; it never touches the database or the logging locks.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import gc
import json
import os
import resource
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from scenecap.core.errors import ERRORS_BY_CODE, MediaRejected, MediaUnreadable, ScenecapError
from scenecap.core.settings import Settings

T = TypeVar("T")
Send = Callable[[Any], None]
Blobs = list[bytes]
_HEADER = 4  # bytes of each record's header length
_MAX_HEADER = 64 * 1024 * 1024
_MAX_BLOBS = 1024 * 1024 * 1024
# What the child keeps of the environment: nothing that names a server or holds a secret.
_SAFE_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
_CLONE_NEWNET, _CLONE_NEWUSER = 0x40000000, 0x10000000
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int  # address space of the child (RLIMIT_AS)
    seconds: float  # wall-clock deadline for the whole call

    @classmethod
    def of(cls, settings: Settings) -> SandboxLimits:
        return cls(settings.decode_memory_mb * 1024 * 1024, settings.decode_timeout_seconds)


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How a result crosses the pipe: JSON plus byte blobs, rebuilt on the worker's side."""

    encode: Callable[[T], tuple[Any, Blobs]]
    decode: Callable[[Any, Blobs], T]

    def pack(self, value: T) -> bytes:
        """The same as one self-contained byte string, to keep in the store or the database:
        a JSON line (the value and the blobs' sizes), then the blobs."""
        plain, blobs = self.encode(value)
        head = json.dumps({"value": plain, "sizes": [len(b) for b in blobs]}).encode()
        return b"".join([head, b"\n", *blobs])

    def unpack(self, data: bytes) -> T:
        head, _, rest = data.partition(b"\n")
        document = json.loads(head)
        blobs, at = [], 0
        for size in document["sizes"]:
            blobs.append(rest[at : at + size])
            at += size
        if at != len(rest):
            raise ValueError("packed blobs of the wrong size")
        return self.decode(document["value"], blobs)


JSON: Codec[Any] = Codec(lambda value: (value, []), lambda value, _blobs: value)


def run_sandboxed(
    work: Callable[[Send], T],
    limits: SandboxLimits,
    on_message: Callable[[Any], None] | None = None,
    codec: Codec[T] = JSON,
    messages: Codec[Any] = JSON,
) -> T:
    """Run work(send) in a child; what it sends reaches on_message here as it comes (through
    `messages`: JSON unless told otherwise, e.g. frames to caption while more are decoded).

    Returns what work returns, through `codec`; re-raises the media errors it raised; anything
    else that ends the child (a signal, running out of memory, the deadline, a malformed
    reply) is MediaUnreadable.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (its coverage is its parent's observations)
        os.close(read_fd)
        _child(work, limits, codec, messages, write_fd)
    os.close(write_fd)
    try:
        return _parent(pid, read_fd, limits, on_message, codec, messages)
    finally:
        os.close(read_fd)


def _child(
    work: Callable[[Send], Any],
    limits: SandboxLimits,
    codec: Codec[Any],
    messages: Codec[Any],
    fd: int,
) -> None:
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Celery's handlers are the parent's
        faulthandler.disable()  # a crash here is reported by the parent, once
        gc.freeze()  # the parent's objects are never finalised here (their descriptors are gone)
        sys.dont_write_bytecode = True  # an import must not try to write a file (RLIMIT_FSIZE)
        isolate(fd)
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))

        def send(kind: str, value: Any, blobs: Blobs | None = None) -> None:
            blobs = blobs or []
            header = json.dumps({"kind": kind, "value": value, "blobs": [len(b) for b in blobs]})
            data = header.encode()
            os.write(fd, len(data).to_bytes(_HEADER, "big") + data)
            for blob in blobs:
                _write_all(fd, blob)

        try:
            result = work(lambda message: send("message", *messages.encode(message)))
            send("result", *codec.encode(result))
        except MediaRejected as exc:
            send("error", {"code": exc.code, "message": exc.message, "details": exc.details})
        except MemoryError:
            send(
                "error",
                {
                    "code": MediaUnreadable.code,
                    "message": "decoding needed more memory than allowed",
                },
            )
        except BaseException as exc:
            message = f"decoding failed: {type(exc).__name__}"
            send("error", {"code": MediaUnreadable.code, "message": message})
    except BaseException:
        code = 1
    os._exit(code)


def isolate(keep_fd: int) -> None:
    """Cut the forked child off from what the worker holds (called in the child)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the worker dies: so does this
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # No network: a new, empty network namespace (as root, or in a new user namespace).
    if libc.unshare(_CLONE_NEWNET) != 0:
        libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET)
    # Every inherited descriptor but the reply pipe and stderr now points at /dev/null; the
    # numbers stay taken, so nothing the child opens can be closed by a stale owner.
    null = os.open(os.devnull, os.O_RDWR)
    for name in os.listdir("/proc/self/fd"):
        number = int(name)
        if number not in (2, keep_fd, null):
            with contextlib.suppress(OSError):
                os.dup2(null, number)
    kept = {name: os.environ[name] for name in _SAFE_ENV if name in os.environ}
    os.environ.clear()
    os.environ.update(kept)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # it reads media; it writes no file


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _parent(
    pid: int,
    read_fd: int,
    limits: SandboxLimits,
    on_message: Callable[[Any], None] | None,
    codec: Codec[T],
    messages: Codec[Any],
) -> T:
    reader = _Reader(read_fd, time.monotonic() + limits.seconds, limits.seconds)
    outcome: tuple[str, Any, Blobs] | None = None
    try:
        while outcome is None:
            record = reader.record()
            if record is None:
                break  # The child is gone without an answer.
            kind, value, blobs = record
            if kind == "message":
                if on_message is not None:
                    on_message(_decoded(messages, value, blobs))
            else:
                outcome = record
    finally:
        status = _reap(pid, kill=outcome is None)
    if outcome is None:
        raise MediaUnreadable(f"the decoder crashed ({_describe(status)}); the media is unreadable")
    kind, value, blobs = outcome
    if kind == "error":
        raise _media_error(value)
    if kind != "result":
        raise MediaUnreadable("the decoder answered something that is not a result")
    return _decoded(codec, value, blobs)


def _decoded(codec: Codec[T], value: Any, blobs: Blobs) -> T:
    try:
        return codec.decode(value, blobs)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise MediaUnreadable(f"the decoder's answer is malformed ({exc})") from None


def _media_error(value: Any) -> ScenecapError:
    """The child's error, as one of the media errors it may report (anything else: unreadable)."""
    try:
        code, message, details = value["code"], str(value["message"]), value.get("details") or {}
    except (KeyError, TypeError):
        return MediaUnreadable("the decoder failed without saying why")
    cls = ERRORS_BY_CODE.get(code)
    if cls is None or not issubclass(cls, MediaRejected):
        cls = MediaUnreadable
    return cls(message[:2000], details if isinstance(details, dict) else {})


class _Reader:
    """Length-prefixed records from the child's pipe, read within the deadline."""

    def __init__(self, fd: int, deadline: float, seconds: float) -> None:
        self.fd, self.deadline, self.seconds = fd, deadline, seconds
        self.buffer = bytearray()

    def record(self) -> tuple[str, Any, Blobs] | None:
        head = self._take(_HEADER)
        if head is None:
            return None
        size = int.from_bytes(head, "big")
        if size > _MAX_HEADER:
            raise MediaUnreadable("the decoder sent an oversized answer")
        raw = self._take(size)
        if raw is None:
            return None
        try:
            header = json.loads(raw)
            kind, value, sizes = str(header["kind"]), header["value"], list(header["blobs"])
            if not all(isinstance(n, int) and n >= 0 for n in sizes) or sum(sizes) > _MAX_BLOBS:
                raise ValueError("bad blob sizes")
        except (ValueError, KeyError, TypeError):
            raise MediaUnreadable("the decoder's answer is not one it may send") from None
        blobs = []
        for length in sizes:
            blob = self._take(length)
            if blob is None:
                return None
            blobs.append(blob)
        return kind, value, blobs

    def _take(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                raise MediaUnreadable(
                    f"decoding did not finish within {self.seconds:g} s; the media was abandoned"
                )
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
        taken = bytes(self.buffer[:size])
        del self.buffer[:size]
        return taken


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
