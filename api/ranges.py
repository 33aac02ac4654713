"""HTTP Range (RFC 9110) for artifact downloads: one byte range per request, enough to resume.

Multi-range requests (multipart/byteranges) are answered with the whole file, which RFC 9110 allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ApiError

_SINGLE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """None means "send the whole file" (no header, or one we choose to ignore, e.g. multi-range)."""
    if not header:
        return None
    match = _SINGLE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix range: the last N bytes
        n = int(last)
        if n == 0:
            raise unsatisfiable(size)
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise unsatisfiable(size)
    return ByteRange(start, end)


def unsatisfiable(size: int) -> ApiError:
    return ApiError(416, "range_not_satisfiable", f"the requested range is outside the file ({size} bytes)",
                    {"Content-Range": f"bytes */{size}"})
