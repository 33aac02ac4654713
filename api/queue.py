"""The Celery app as the API sees it: a producer of job ids. Tasks live in ``worker``.

The API sends by task name, so it never imports the worker (and therefore never imports torch).
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from .settings import Settings

TASK_NAME = "xtc.compress"


def make_celery(settings: Settings) -> Celery:
    app = Celery("xtc", broker=settings.broker_url, set_as_current=False)
    transport_options: dict = {"visibility_timeout": settings.visibility_timeout_s}
    if settings.broker_url.startswith("filesystem://"):
        folder = Path(settings.broker_folder).expanduser().resolve()
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        transport_options.update(
            data_folder_in=str(folder / "queue"), data_folder_out=str(folder / "queue"),
            processed_folder=str(folder / "processed"), store_processed=False,
            # kombu's default control folder is ./control in the current directory: keep it in ours
            control_folder=str(folder / "control"),
        )
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue,
        task_routes={TASK_NAME: {"queue": settings.queue}},
        # A job is acknowledged only when it has finished, so a killed worker's job is redelivered;
        # the conditional claim in the worker makes that redelivery harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.job_soft_time_limit_s,
        task_time_limit=settings.job_hard_time_limit_s,
        task_ignore_result=True,  # Postgres holds the outcome; the API never reads Celery results
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
    )
    return app


class JobQueue:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.celery = make_celery(settings)

    def enqueue(self, job_id: str) -> None:
        # Only the id travels: the worker reads the request from the database.
        self.celery.send_task(TASK_NAME, args=[job_id], queue=self.settings.queue)

    def check(self) -> None:
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
