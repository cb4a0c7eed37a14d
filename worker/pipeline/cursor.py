"""Walk a video's frames from keyframe to wanted frame, decoding as little as the timeline allows.

For each wanted time the probe's packet timeline says which frame is on screen then and which
keyframe it hangs from. The cursor seeks to that keyframe (unless it is already decoding that
keyframe's group) and, walking forward, lets the decoder skip every frame nothing refers to
except the frames it wants. Once the wanted frame is sent, the decoder is drained rather than
fed further, unless the next wanted frame is in the same group. Where the packets carry no
times, or the decoder disagrees with them, it decodes every frame from the keyframe instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from scenecap.core.errors import MediaUnreadable
from worker.pipeline.probe import Clock, Timeline

_EPSILON = 1e-6  # seconds: times closer than this are the same frame


def _key(time: float) -> float:
    return round(time, 6)


class FrameCursor:
    """Decodes forward from keyframes, as little as the timeline allows, for ascending times."""

    def __init__(self, container: Any, stream: Any, timeline: Timeline) -> None:
        self.container = container
        self.stream = stream
        self.timeline = timeline
        self.clock = Clock.of(stream)
        self.packets: Iterator[Any] | None = None  # None: the decoder must seek first
        self.fresh = True  # nothing read yet: the demuxer is at the file's start
        self.ready: dict[float, tuple[Any, float]] = {}  # wanted frames decoded early
        self.keep: set[float] = set()

    def frames_at(self, times: list[float]) -> Iterator[tuple[Any, float]]:
        """For each time (ascending), the frame on screen then (the last one at or before it)
        and that frame's own time."""
        wanted = [self.timeline.shown_at(t) for t in times]
        self.keep = {_key(w) for w in wanted}
        guided = self.timeline.complete
        last: tuple[Any, float] | None = None
        for n, (time, frame_time) in enumerate(zip(times, wanted, strict=True)):
            if guided and last is not None and _key(last[1]) == _key(frame_time):
                yield last  # Two planned times share a frame (a very low frame rate).
                continue
            # Walking on pays only while no keyframe lies before the next wanted frame.
            carry_on = n + 1 < len(wanted) and (
                self.timeline.keyframe_before(wanted[n + 1]) <= frame_time + _EPSILON
            )
            found = self._guided(frame_time, carry_on) if guided else None
            last = found or self._every_frame(time)
            yield last

    def _guided(self, wanted: float, carry_on: bool) -> tuple[Any, float] | None:
        """Decode up to the wanted frame, skipping unreferenced frames; None if it never shows."""
        found = self.ready.pop(_key(wanted), None)
        if found is None:
            if self.packets is None:
                self._seek(wanted)
            found = self._walk_to(wanted, drain=not carry_on)
        if not carry_on:
            self.packets = None  # What the decoder holds now is of no further use.
        return found

    def _walk_to(self, wanted: float, *, drain: bool) -> tuple[Any, float] | None:
        sent = False
        while self.packets is not None:
            packet = None if sent and drain else next(self.packets, None)
            if packet is None or packet.size == 0:
                frames = self._drain()  # The end, or nothing after the wanted frame is needed.
            else:
                at = None if packet.pts is None else _key(self.clock.seconds(packet.pts))
                self._skip("DEFAULT" if at is None or at in self.keep else "NONREF")
                sent = sent or at == _key(wanted)
                frames = self.stream.decode(packet)
            found = None
            for frame in frames:
                if frame.pts is None:
                    continue
                item = (frame, self.clock.seconds(frame.pts))
                if _key(item[1]) == _key(wanted):
                    found = item
                elif item[1] > wanted and _key(item[1]) in self.keep:
                    self.ready[_key(item[1])] = item
                elif item[1] > wanted and found is None:
                    return None  # Shown after the wanted frame, which never came: distrust.
            if found is not None:
                return found
        return None

    def _every_frame(self, target: float) -> tuple[Any, float]:
        """The plain way: decode every frame from the keyframe; keep the last one in time."""
        self._seek(target)
        self._skip("DEFAULT")
        previous = None
        for packet in self.packets or ():
            for frame in self.stream.decode(packet):
                if frame.pts is None:
                    continue
                at = self.clock.seconds(frame.pts)
                if at > target + _EPSILON and previous is not None:
                    self.packets = None  # The guided walk cannot continue from here.
                    return previous
                previous = (frame, at)
        self.packets = None
        if previous is None:
            raise MediaUnreadable("the video has no decodable frames")
        return previous

    def _skip(self, frames: str) -> None:
        # Only frames that no other frame refers to may be skipped ("NONREF"), so what is
        # decoded is exactly what a full decode gives.
        if self.stream.codec_context.skip_frame != frames:
            self.stream.codec_context.skip_frame = frames

    def _seek(self, time: float) -> None:
        """Position the demuxer on the keyframe at or before `time`.

        Some demuxers seek by decode timestamp or land near rather than on a keyframe (MPEG-TS
        lands on the packet after it), so packets are read (not decoded) up to the keyframe,
        seeking further back while the landing point is past it.
        """
        keyframe = self.timeline.keyframe_before(time)
        # A demuxer that was just opened is on the first keyframe already. Seeking there
        # anyway fails in some: FFmpeg's image2 (a still image named .jpg) refuses any seek.
        first = not self.timeline.keyframes or keyframe <= self.timeline.keyframes[0] + _EPSILON
        at_start, self.fresh = self.fresh and first, False
        back = 0.0
        while True:
            if not at_start:
                self.container.seek(
                    self.clock.pts(keyframe - back),
                    stream=self.stream,
                    backward=True,
                    any_frame=False,
                )
            at_start = False
            packets = self.container.demux(self.stream)
            if back > keyframe + 1:  # At the very start: decode whatever the file begins with.
                break
            for packet in packets:
                at = None if packet.pts is None else self.clock.seconds(packet.pts)
                if packet.is_keyframe and at is not None and at >= keyframe - _EPSILON:
                    if at <= keyframe + _EPSILON:
                        packets = itertools.chain([packet], packets)
                        self.packets, self.ready = packets, {}
                        return
                    break  # Landed past it.
            back = max(1.0, back * 2)
        self.packets, self.ready = packets, {}

    def _drain(self) -> list[Any]:
        """Send end-of-stream and collect what the decoder still holds; a seek must follow."""
        self.packets = None
        self._skip("DEFAULT")
        return list(self.stream.decode(None))
