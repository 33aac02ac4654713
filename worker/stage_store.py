"""The service's stage cache: entries are artifacts in the storage backend (S3 or a folder) under
``stage-cache/<key>.pt``, shared by every worker; a per-key lock keeps two workers from training the
same stage at once (the second waits, then loads what the first stored).

The lock is a Postgres advisory lock on its own connection: a worker that dies mid-stage loses its
connection and so its lock, and the waiting worker trains the stage instead. On SQLite (the embedded
single-machine service) it is a file lock beside the database.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from api.db.session import normalize_url
from api.settings import Settings
from api.storage import Storage

log = logging.getLogger("xtc.worker")
PREFIX = "stage-cache"


def _missing(exc: Exception) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    response = getattr(exc, "response", None)  # botocore.ClientError
    code = str((response or {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class StorageStageStore:
    def __init__(self, storage: Storage, settings: Settings, should_stop: Callable[[], bool] | None = None):
        self.storage = storage
        self.settings = settings
        self.should_stop = should_stop

    # The cache only saves time: a storage error while reading or writing it is logged and the job
    # goes on (training the stage, or not keeping it), rather than failing.
    def fetch(self, key: str, dest: Path) -> bool:
        try:
            self.storage.get_to_file(f"{PREFIX}/{key}.pt", dest)
        except Exception as exc:
            if not _missing(exc):
                log.warning("stage cache read of %s failed (%s: %s); training the stage", key[:12],
                            type(exc).__name__, exc)
            dest.unlink(missing_ok=True)
            return False
        return True

    def store(self, key: str, src: Path) -> None:
        try:
            self.storage.put_file(f"{PREFIX}/{key}.pt", src)
        except Exception as exc:
            log.warning("stage cache write of %s failed (%s: %s); not cached", key[:12],
                        type(exc).__name__, exc)

    def _wait(self) -> None:
        if self.should_stop and self.should_stop():
            from xtc_core.errors import Cancelled

            raise Cancelled("cancelled while waiting for another job to train a shared stage")
        time.sleep(0.5)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        url = normalize_url(self.settings.database_url)
        if url.startswith("sqlite"):
            from xtc_core.stage_cache import LocalStageStore

            with LocalStageStore(Path(self.settings.data_dir) / "stage-locks").lock(key):
                yield
            return
        import psycopg

        lock_id = int(key[:15], 16)  # 60 bits of the key: fits Postgres' signed bigint
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
            waited = False
            while not conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_id,)).fetchone()[0]:
                if not waited:
                    log.info("stage %s is being trained by another job; waiting for it", key[:12])
                    waited = True
                self._wait()
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock_id,))
