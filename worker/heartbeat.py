"""The lease of a running job, refreshed from a thread: long evaluations or a slow step between two
progress callbacks must not look like a dead worker to the supervisor."""

from __future__ import annotations

import logging
import threading

from api.db import repo
from api.db.session import session_scope
from api.settings import Settings

log = logging.getLogger("xtc.worker")


class Heartbeat:
    def __init__(self, job_id: str, attempt: int | None, settings: Settings):
        self.job_id, self.attempt = job_id, attempt
        self.url = settings.database_url
        self.interval = settings.heartbeat_interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"xtc-heartbeat-{job_id}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with session_scope(self.url) as s:
                    if not repo.heartbeat(s, self.job_id, self.attempt):
                        return  # finished, or no longer ours: StopCheck tells the run
            except Exception as exc:  # the database is briefly away: the lease allows for that
                log.warning("heartbeat for %s failed: %s", self.job_id, exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(10)
