"""Decoding in a forked child: what happens to the child never happens to the worker, and what
the child could reach if hostile media took it over, it cannot."""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from scenecap.core.errors import JobCancelled, MediaUnreadable, NoVideoStream
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


class TestIsolation:
    """What a decoder taken over by hostile media could reach, it cannot."""

    def test_the_child_has_no_network(self) -> None:
        def work(_send: Send) -> str:
            with socket.socket() as probe:
                probe.settimeout(2)
                try:
                    probe.connect(("127.0.0.1", 5432))  # PostgreSQL answers the worker here
                except OSError as exc:
                    return errno.errorcode.get(exc.errno or 0, "refused")
            return "connected"

        assert run_sandboxed(work, limits()) in ("ENETUNREACH", "EADDRNOTAVAIL")

    def test_the_child_sees_no_secrets_in_its_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SCENECAP_DATABASE_URL", "postgresql://user:secret@db/scenecap")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        seen = run_sandboxed(lambda _send: sorted(os.environ), limits())
        assert not [name for name in seen if "SCENECAP" in name or "AWS" in name]

    def test_the_child_holds_none_of_the_workers_descriptors(self, tmp_path: Path) -> None:
        with (tmp_path / "worker-file").open("w") as held, socket.socket() as connection:
            connection.connect(("127.0.0.1", 5432))
            numbers = [held.fileno(), connection.fileno()]
            seen = run_sandboxed(
                lambda _send: [os.readlink(f"/proc/self/fd/{n}") for n in numbers], limits()
            )
        assert seen == [os.devnull, os.devnull]

    def test_the_child_writes_no_file(self, tmp_path: Path) -> None:
        def work(_send: Send) -> None:
            (tmp_path / "dropped").write_bytes(b"x" * 4096)

        with pytest.raises(MediaUnreadable):
            run_sandboxed(work, limits())
        assert not (tmp_path / "dropped").exists() or (tmp_path / "dropped").stat().st_size == 0

    def test_a_pickled_reply_is_refused_not_run(self, tmp_path: Path) -> None:
        marker = tmp_path / "ran"

        class Exploit:
            def __reduce__(self) -> tuple[Any, ...]:
                return (Path.touch, (marker,))

        def work(_send: Send) -> None:
            # A compromised decoder writes what it likes to its reply pipe, then leaves.
            [pipe] = [
                int(n)
                for n in os.listdir("/proc/self/fd")
                if os.readlink(f"/proc/self/fd/{n}").startswith("pipe:")
            ]
            payload = pickle.dumps(("result", Exploit()))
            os.write(pipe, len(payload).to_bytes(8, "big") + payload)
            os._exit(0)

        with pytest.raises(MediaUnreadable):
            run_sandboxed(work, limits())
        assert not marker.exists(), "the worker ran code the child sent"

    def test_errors_other_than_media_errors_are_not_believed(self) -> None:
        def work(_send: Send) -> None:
            raise JobCancelled("a decoder claiming the job was cancelled")

        with pytest.raises(MediaUnreadable, match="decoding failed: JobCancelled"):
            run_sandboxed(work, limits())
