"""Byte-reproducible safetensors files.

safetensors keeps ``__metadata__`` in a hash map, so its key order (and therefore the file's bytes)
changes from one process to the next even for identical tensors. Rewriting the header with the
metadata keys sorted makes the same tensors give the same bytes, which is what lets a test prove
that an export does not depend on the thread count or the device.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path


def canonicalize_header(path: str | Path) -> None:
    """Sort the metadata keys of a safetensors file in place (same header length, same tensors)."""
    path = Path(path)
    with open(path, "r+b") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        raw = f.read(size)
        header = json.loads(raw, object_pairs_hook=dict)
        meta = header.get("__metadata__")
        if not meta:
            return
        header["__metadata__"] = dict(sorted(meta.items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        stripped = raw.rstrip(b" ")
        if len(text) != len(stripped) or sorted(text) != sorted(stripped):
            return  # not the compact layout this rewrite assumes: leave the file as written
        f.seek(8)
        f.write(text + raw[len(text):])
