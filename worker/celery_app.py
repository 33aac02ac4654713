"""The worker's Celery app: the API's queue configuration plus the task module.

Start it with ``celery -A worker.celery_app worker`` (settings come from XTC_* variables).
"""

from __future__ import annotations

import logging

from celery.signals import worker_init, worker_ready, worker_shutdown

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


_supervisor = None


@worker_ready.connect
def _start_supervisor(**_kwargs) -> None:
    # In the worker's main process (pool children come and go): re-queues jobs whose worker was lost
    # and jobs whose message the broker lost. See docs/reliability.md.
    global _supervisor
    from api.supervisor import Supervisor

    _supervisor = Supervisor(get_settings()).start()
    logging.getLogger("xtc.worker").info("job supervisor started (lease %.1f s, every %.1f s)",
                                         get_settings().job_lease_s, get_settings().supervisor_interval_s)


@worker_shutdown.connect
def _stop_supervisor(**_kwargs) -> None:
    if _supervisor is not None:
        _supervisor.stop()


import worker.tasks  # noqa: E402,F401  (registers the task on `app`)
