"""Where the server is and which key to send: flags, then XTC_* variables, then `xtc serve`'s key file."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import AUTH, ClientError

DEFAULT_SERVER = "http://127.0.0.1:8000"


def key_file(data_dir: str | None = None) -> Path:
    """The file `xtc serve` writes its local tenant's key to: <data dir>/api_key."""
    return Path(data_dir or os.environ.get("XTC_DATA_DIR") or "./xtc-data").expanduser() / "api_key"


def resolve_server(server: str | None) -> str:
    return (server or os.environ.get("XTC_SERVER") or DEFAULT_SERVER).rstrip("/")


def resolve_key(api_key: str | None, data_dir: str | None = None) -> str:
    key = api_key or os.environ.get("XTC_API_KEY")
    if key:
        return key.strip()
    path = key_file(data_dir)
    try:
        key = path.read_text().strip()
    except OSError:
        key = ""
    if not key:
        raise ClientError(f"no API key: pass --api-key, set XTC_API_KEY, or run `xtc serve` (writes {path})",
                          AUTH)
    return key
