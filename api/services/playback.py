"""The job's stored media, served for the report's player (docs/api.md, "The report"): a
single byte range per request, as browsers ask for it while playing and seeking, read from
the store range by range (never whole into memory)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from scenecap.core.errors import RangeNotSatisfiable
from scenecap.store import MediaStore

CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class Span:
    start: int
    end: int  # inclusive, as HTTP counts
    partial: bool  # asked for with Range: answered 206

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def span_of(header: str | None, size: int) -> Span:
    """The bytes a Range header asks for: the whole object without one (or with several
    ranges, which players do not send); 416 for one that is malformed or past the end."""
    if header is None or "," in header:
        return Span(0, max(0, size - 1), False)
    found = _RANGE.fullmatch(header.strip())
    if found is None or not (found[1] or found[2]):
        raise _unsatisfiable(size)
    if not found[1]:  # the last N bytes
        start, end = max(0, size - int(found[2])), size - 1
    else:
        start = int(found[1])
        end = min(int(found[2]), size - 1) if found[2] else size - 1
    if start >= size or start > end:
        raise _unsatisfiable(size)
    return Span(start, end, True)


def read_span(store: MediaStore, key: str, span: Span) -> Iterator[bytes]:
    with store.open(key) as reader:
        reader.seek(span.start)
        left = span.length
        while left > 0 and (chunk := reader.read(min(CHUNK, left))):
            left -= len(chunk)
            yield chunk


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"the media is {size} bytes; ask for a range within them", {"size": size}
    )
