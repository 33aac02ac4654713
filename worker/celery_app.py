"""The worker's Celery app: the API's queue configuration plus the task module.

Start it with ``celery -A worker.celery_app worker`` (settings come from XTC_* variables).
"""

from __future__ import annotations

import logging

from celery.signals import worker_init

from api.queue import make_celery
from api.settings import get_settings

app = make_celery(get_settings())
app.conf.include = ["worker.tasks"]


@worker_init.connect
def _preload_core(**_kwargs) -> None:
    # Importing torch + transformers takes seconds; pay it at start-up, not when the first job
    # arrives. This does not initialise CUDA, so forked pool children are still safe.
    try:
        import xtc_core.pipeline  # noqa: F401
    except Exception:  # the task will report the real error with a code
        logging.getLogger("xtc.worker").exception("could not preload xtc_core.pipeline")


import worker.tasks  # noqa: E402,F401  (registers the task on `app`)
