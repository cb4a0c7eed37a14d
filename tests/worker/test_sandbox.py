"""Decoding in a forked child: what happens to the child never happens to the worker."""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import Any

import pytest

from scenecap.errors import JobCancelled, MediaUnreadable, NoVideoStream
from worker.pipeline.sandbox import SandboxLimits, Send, run_sandboxed

GIB = 1024**3


def limits(seconds: float = 30, extra_memory: int = 2 * GIB) -> SandboxLimits:
    return SandboxLimits(_address_space() + extra_memory, seconds)


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


def _children() -> set[int]:
    return {
        int(p) for p in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    }


def test_result_and_messages_come_back_in_order() -> None:
    heard: list[Any] = []

    def work(send: Send) -> dict[str, int]:
        for n in range(5):
            send(n)
        return {"pid": os.getpid(), "big": len(b"x" * 5_000_000)}

    result = run_sandboxed(work, limits(), on_message=heard.append)
    assert heard == [0, 1, 2, 3, 4]
    assert result["big"] == 5_000_000
    assert result["pid"] != os.getpid(), "the work ran in another process"


def test_our_errors_cross_over_with_their_code() -> None:
    def work(_send: Send) -> None:
        raise NoVideoStream("the file has no video stream")

    with pytest.raises(NoVideoStream, match="no video stream"):
        run_sandboxed(work, limits())


def test_a_crashing_decoder_fails_the_media_not_the_worker() -> None:
    def work(_send: Send) -> None:
        ctypes.string_at(0)  # a segmentation fault, as a broken decoder would cause

    with pytest.raises(MediaUnreadable, match=r"crashed \(signal SIGSEGV\)"):
        run_sandboxed(work, limits())
    assert run_sandboxed(lambda _send: "still here", limits()) == "still here"


def test_a_hanging_decoder_is_killed_at_the_deadline() -> None:
    def work(_send: Send) -> None:
        time.sleep(600)  # a decoder that hangs, far past the deadline

    before = _children()  # the session's worker, for one
    with pytest.raises(MediaUnreadable, match="did not finish within 1 s"):
        run_sandboxed(work, limits(seconds=1))
    assert _children() <= before, "the hung child was left behind"


def test_a_decoder_that_balloons_hits_the_memory_cap() -> None:
    def work(_send: Send) -> int:
        return len(bytearray(3 * GIB))

    with pytest.raises(MediaUnreadable, match="more memory than allowed"):
        run_sandboxed(work, limits(extra_memory=GIB // 2))


def test_a_cancellation_seen_by_the_parent_stops_the_child() -> None:
    def work(send: Send) -> None:
        send(0.5)
        time.sleep(600)  # decoding that would go on, past any deadline

    def on_message(_fraction: float) -> None:
        raise JobCancelled("the job was cancelled")

    before = _children()
    with pytest.raises(JobCancelled):
        run_sandboxed(work, limits(), on_message=on_message)
    assert _children() <= before
