"""One job, start to finish: claim, build the core config, compress, upload, record.

Kept free of Celery so tests (and a future non-Celery runner) can call it directly.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from api.db import repo
from api.db.session import session_scope
from api.settings import Settings
from api.storage import Storage, storage_from_settings

from .progress import ProgressWriter, StopCheck

log = logging.getLogger("xtc.worker")


class StorageFailure(Exception):
    code = "storage_error"


def run_job(job_id: str, settings: Settings, storage: Storage | None = None) -> str:
    """Returns the final status, or "skipped" when the job was not ours to run."""
    with session_scope(settings.database_url) as s:
        if not repo.claim_job(s, job_id, lease=timedelta(seconds=settings.job_lease_s)):
            # A redelivered message, a cancelled job, or a job another worker holds: do nothing.
            log.info("job %s not claimable (redelivered, cancelled or finished); skipping", job_id)
            return "skipped"
        request = dict(repo.load_job(s, job_id).request)
    storage = storage or storage_from_settings(settings)
    stop = StopCheck(job_id, settings)
    work_dir = Path(settings.work_dir).expanduser().resolve() / job_id
    try:
        with tempfile.TemporaryDirectory(prefix=f"xtc-{job_id}-") as tmp:
            metrics, artifacts = _compress(job_id, request, settings, storage, stop, work_dir, Path(tmp))
        with session_scope(settings.database_url) as s:
            repo.finish_succeeded(s, job_id, metrics=metrics, artifacts=artifacts)
        status = "succeeded"
    except Exception as exc:
        status = _record_failure(job_id, settings, exc, stop)
    if status != "running":
        shutil.rmtree(work_dir, ignore_errors=True)  # resume state is only useful to an unfinished job
    return status


def _record_failure(job_id: str, settings: Settings, exc: Exception, stop: StopCheck) -> str:
    from xtc_core.errors import Cancelled, XTCError

    with session_scope(settings.database_url) as s:
        if isinstance(exc, Cancelled) and stop.reason == "time_limit":
            repo.finish_failed(s, job_id, code="time_limit_exceeded",
                               message=f"the job ran longer than {settings.job_soft_time_limit_s} s; "
                                       "choose a smaller budget or fewer training examples")
            return "failed"
        if isinstance(exc, Cancelled):
            repo.finish_cancelled(s, job_id)
            return "cancelled"
        if isinstance(exc, XTCError):
            log.warning("job %s failed: %s: %s", job_id, exc.code, exc.message)
            repo.finish_failed(s, job_id, code=exc.code, message=exc.message)
            return "failed"
        if isinstance(exc, StorageFailure):
            log.exception("job %s: artifact storage failed", job_id)
            repo.finish_failed(s, job_id, code=exc.code, message=str(exc))
            return "failed"
        log.exception("job %s crashed", job_id)
        summary = f"{type(exc).__name__}: {exc}"[:500]
        repo.finish_failed(s, job_id, code="internal_error",
                           message=f"unexpected error in the worker ({summary}); the operator's log has "
                                   "the details")
        return "failed"


def _compress(
    job_id: str, request: dict[str, Any], settings: Settings, storage: Storage, stop: StopCheck,
    work_dir: Path, tmp: Path,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from xtc_core.config import CompressConfig, budget
    from xtc_core.pipeline import compress

    training = request.get("training") or {}
    compression = request.get("compression") or {}
    preset = training.get("budget", "quick")
    cfg = CompressConfig(
        model=request["model"],
        data=_data_source(request["task"], settings, storage, tmp / "data"),
        output_dir=str(tmp / "out"),
        weight_bits=compression.get("weight_bits", 1),
        activation_bits=compression.get("activation_bits", 8),
        layers=compression.get("layers"),
        training=budget(preset, **(training.get("overrides") or {})),
        budget_name=preset,
        work_dir=str(work_dir),  # survives a worker restart, so a reclaimed job resumes
    )
    from .stage_store import StorageStageStore

    store = StorageStageStore(storage, settings, stop) if settings.stage_cache else None
    result = compress(cfg, on_progress=ProgressWriter(job_id, settings), should_stop=stop, stage_store=store)
    artifacts = _upload(job_id, Path(result.output_dir), storage)
    return result.metrics, artifacts


def _data_source(task: str | dict[str, Any], settings: Settings, storage: Storage, folder: Path):
    from xtc_core.config import DataSource

    if isinstance(task, str):
        return DataSource(task=task, glue_dir=settings.glue_dir)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    with session_scope(settings.database_url) as s:
        for role in ("train", "dev"):
            ds = repo.get_dataset_unscoped(s, task[f"{role}_dataset"])
            if ds is None:
                from xtc_core.errors import DataError

                raise DataError(task[f"{role}_dataset"], "the uploaded dataset no longer exists")
            files[role] = (ds.storage_key, folder / f"{role}-{ds.filename}")
    for key, path in files.values():
        storage.get_to_file(key, path)
    cols = task["columns"]
    return DataSource(
        train_file=str(files["train"][1]), dev_file=str(files["dev"][1]), text_column=cols["text"],
        label_column=cols["label"], text_pair_column=cols.get("text_pair"),
        regression=bool(task.get("regression")),
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _upload(job_id: str, out_dir: Path, storage: Storage) -> list[dict[str, Any]]:
    artifacts = []
    for path in sorted(out_dir.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        key = f"jobs/{job_id}/{path.name}"  # derived from the id: a re-upload overwrites, harmlessly
        try:
            storage.put_file(key, path)
        except Exception as exc:
            raise StorageFailure(f"uploading {path.name} failed ({type(exc).__name__}: {exc}); "
                                 "check the storage settings and retry the job") from exc
        artifacts.append({"name": path.name, "size": path.stat().st_size, "sha256": _sha256(path),
                          "storage_key": key})
    return artifacts
