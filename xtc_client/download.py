"""Streamed, sha256-verified, resumable artifact downloads.

A transfer writes to ``NAME.part`` and renames it only once its sha256 matches the server's listing,
so a finished NAME is always a verified file. An interrupted transfer leaves the .part behind; the
next run asks for the rest with ``Range`` (+ ``If-Range`` on the artifact's ETag, so a changed file is
sent whole instead of being spliced onto stale bytes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .api import Api
from .errors import INTEGRITY, USAGE, ClientError

CHUNK = 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _transfer(api: Api, job_id: str, art: dict[str, Any], part: Path,
              on_bytes: Callable[[int], None]) -> tuple[int, str]:
    """Fill ``part`` up to the artifact's size; returns (bytes resumed from, sha256 of the result)."""
    have = part.stat().st_size if part.exists() else 0
    if have > art["size"]:
        part.unlink()
        have = 0
    headers = {"Range": f"bytes={have}-", "If-Range": f'"{art["sha256"]}"'} if 0 < have < art["size"] else {}
    digest = hashlib.sha256()
    if have == art["size"]:
        return have, sha256_file(part)
    with api.stream(f"/jobs/{job_id}/artifacts/{art['name']}", headers=headers) as response:
        resumed = have if response.status_code == 206 else 0
        mode = "ab" if resumed else "wb"
        if resumed:
            with open(part, "rb") as fh:  # the hash must cover the bytes we already have
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
        on_bytes(resumed)
        with open(part, mode) as out:
            for chunk in response.iter_bytes(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                on_bytes(len(chunk))
    return resumed, digest.hexdigest()


def download_artifact(api: Api, job_id: str, art: dict[str, Any], out_dir: Path,
                      on_bytes: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    name = art["name"]
    if Path(name).name != name or name in ("", ".", ".."):
        raise ClientError(f"refusing artifact name {name!r}: not a plain file name", INTEGRITY)
    dest, part = out_dir / name, out_dir / f"{name}.part"
    result = {"name": name, "size": art["size"], "sha256": art["sha256"], "path": str(dest),
              "resumed_from": 0, "skipped": False, "restarted": False}
    if dest.exists() and dest.stat().st_size == art["size"] and sha256_file(dest) == art["sha256"]:
        result["skipped"] = True
        on_bytes(art["size"])
        return result
    resumed, sha = _transfer(api, job_id, art, part, on_bytes)
    result["resumed_from"] = resumed
    if sha != art["sha256"] and resumed:
        # The partial file was not a prefix of this artifact (corrupt or from elsewhere): start over.
        part.unlink()
        result["restarted"] = True
        result["resumed_from"] = 0
        _, sha = _transfer(api, job_id, art, part, on_bytes)
    if sha != art["sha256"]:
        part.unlink(missing_ok=True)
        raise ClientError(f"{name}: sha256 {sha} does not match the server's {art['sha256']}", INTEGRITY)
    part.replace(dest)
    return result


def prepare_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClientError(f"{out_dir}: cannot create the output folder ({exc.strerror})", USAGE) from None
