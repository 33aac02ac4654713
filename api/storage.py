"""Object storage: a local folder or S3 (MinIO via an endpoint URL), chosen by the storage URL.

Keys are derived from ids (``jobs/<id>/<name>``, ``datasets/<id>/<file>``), so writing the same key
twice is harmless: a redelivered or resumed job simply overwrites its own files.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from .settings import Settings

CHUNK = 1024 * 1024


class Storage(Protocol):
    def put_file(self, key: str, path: Path) -> None: ...
    def get_to_file(self, key: str, path: Path) -> None: ...
    def stream(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...
    def check(self) -> None: ...


class LocalStorage:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key escapes the root: {key!r}")
        return path

    def put_file(self, key: str, path: Path) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(path, tmp)
        tmp.replace(dest)  # readers never see a half-written file

    def get_to_file(self, key: str, path: Path) -> None:
        shutil.copyfile(self._path(key), path)

    def stream(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes start..end (inclusive; end None: to the end of the file)."""
        with open(self._path(key), "rb") as fh:
            fh.seek(start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                chunk = fh.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)


class S3Storage:
    def __init__(self, bucket: str, prefix: str, settings: Settings):
        import boto3  # only hosts that use S3 pay for importing it
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            aws_access_key_id=settings.s3_access_key,
            aws_secret_access_key=settings.s3_secret_key,
            region_name=settings.s3_region,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self._key(key))

    def get_to_file(self, key: str, path: Path) -> None:
        self.client.download_file(self.bucket, self._key(key), str(path))

    def stream(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        extra = {"Range": f"bytes={start}-{'' if end is None else end}"} if start or end is not None else {}
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def check(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)


def storage_from_settings(settings: Settings) -> Storage:
    url = settings.storage_url
    if url.startswith("file://"):
        return LocalStorage(url[len("file://"):])
    if url.startswith("s3://"):
        parsed = urlparse(url)
        if not parsed.netloc:
            raise ValueError(f"storage URL {url!r} names no bucket")
        return S3Storage(parsed.netloc, parsed.path, settings)
    raise ValueError(f"unsupported storage URL {url!r}: use file:///path or s3://bucket/prefix")
