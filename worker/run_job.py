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

from .eta import EtaEstimator
from .heartbeat import Heartbeat
from .progress import ProgressWriter, StopCheck

log = logging.getLogger("xtc.worker")


class StorageFailure(Exception):
    code = "storage_error"


def run_job(job_id: str, settings: Settings, storage: Storage | None = None) -> str:
    """Returns the final status, "skipped" when the job was not ours to run, or "lost" when another
    attempt took it over while this one ran (this one then leaves its state alone)."""
    from api.supervisor import reclaim_if_local_worker_died, this_worker_id

    attempt = _claim(job_id, settings, this_worker_id())
    if attempt is None and reclaim_if_local_worker_died(settings, job_id):
        # Redelivered after our host's previous worker process was killed mid-job: resume now.
        attempt = _claim(job_id, settings, this_worker_id())
    if attempt is None:
        # A duplicate delivery, a cancelled or finished job, or a job a live worker holds: do nothing.
        log.info("job %s not claimable (redelivered, cancelled or finished); skipping", job_id)
        return "skipped"
    with session_scope(settings.database_url) as s:
        request = dict(repo.load_job(s, job_id).request)
    storage = storage or storage_from_settings(settings)
    stop = StopCheck(job_id, settings, attempt)
    work_dir = Path(settings.work_dir).expanduser().resolve() / job_id
    with Heartbeat(job_id, attempt, settings):
        try:
            with tempfile.TemporaryDirectory(prefix=f"xtc-{job_id}-") as tmp:
                metrics, artifacts = _compress(job_id, request, settings, storage, stop, work_dir, Path(tmp),
                                               attempt)
            with session_scope(settings.database_url) as s:
                ours = repo.finish_succeeded(s, job_id, metrics=metrics, artifacts=artifacts, attempt=attempt)
            status = "succeeded" if ours else "lost"
        except Exception as exc:
            status = _record_failure(job_id, settings, exc, stop, attempt)
    if status not in ("running", "lost"):
        shutil.rmtree(work_dir, ignore_errors=True)  # resume state is only useful to an unfinished job
    return status


def _claim(job_id: str, settings: Settings, worker_id: str) -> int | None:
    with session_scope(settings.database_url) as s:
        return repo.claim_job(s, job_id, lease=timedelta(seconds=settings.job_lease_s), worker_id=worker_id,
                              max_attempts=settings.job_max_attempts)


def _record_failure(job_id: str, settings: Settings, exc: Exception, stop: StopCheck,
                    attempt: int | None = None) -> str:
    from xtc_core.errors import Cancelled, XTCError

    if isinstance(exc, Cancelled) and stop.reason == "lost":
        log.warning("job %s was taken over by another attempt; this run stops", job_id)
        return "lost"
    with session_scope(settings.database_url) as s:
        if isinstance(exc, Cancelled) and stop.reason == "time_limit":
            repo.finish_failed(s, job_id, code="time_limit_exceeded",
                               message=f"the job ran longer than {settings.job_soft_time_limit_s} s; "
                                       "choose a smaller budget or fewer training examples", attempt=attempt)
            return "failed"
        if isinstance(exc, Cancelled):
            repo.finish_cancelled(s, job_id, attempt=attempt)
            return "cancelled"
        if isinstance(exc, XTCError):
            log.warning("job %s failed: %s: %s", job_id, exc.code, exc.message)
            repo.finish_failed(s, job_id, code=exc.code, message=exc.message, attempt=attempt)
            return "failed"
        if isinstance(exc, StorageFailure):
            log.exception("job %s: artifact storage failed", job_id)
            repo.finish_failed(s, job_id, code=exc.code, message=str(exc), attempt=attempt)
            return "failed"
        log.exception("job %s crashed", job_id)
        summary = f"{type(exc).__name__}: {exc}"[:500]
        repo.finish_failed(s, job_id, code="internal_error",
                           message=f"unexpected error in the worker ({summary}); the operator's log has "
                                   "the details", attempt=attempt)
        return "failed"


# What this worker applies. A server newer than its workers may accept options they would otherwise
# silently drop (training a model other than the one asked for): such a job fails, saying why.
COMPRESSION_KEYS = frozenset({"weight_bits", "activation_bits", "layers", "weight_groups", "embedding_bits"})


def check_compression_keys(compression: dict[str, Any]) -> None:
    from xtc_core.errors import ConfigError

    unknown = sorted(set(compression) - COMPRESSION_KEYS)
    if unknown:
        raise ConfigError(f"this worker does not know the compression option(s) {', '.join(unknown)}: "
                          "upgrade the workers to the server's version")


def _compress(
    job_id: str, request: dict[str, Any], settings: Settings, storage: Storage, stop: StopCheck,
    work_dir: Path, tmp: Path, attempt: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from xtc_core.config import CompressConfig, budget
    from xtc_core.pipeline import compress

    training = request.get("training") or {}
    compression = request.get("compression") or {}
    check_compression_keys(compression)
    preset = training.get("budget", "quick")
    cfg = CompressConfig(
        model=request["model"],
        data=_data_source(request["task"], settings, storage, tmp / "data"),
        output_dir=str(tmp / "out"),
        weight_bits=compression.get("weight_bits", 1),
        activation_bits=compression.get("activation_bits", 8),
        layers=compression.get("layers"),
        weight_groups=compression.get("weight_groups", 1),
        embedding_bits=compression.get("embedding_bits"),
        training=budget(preset, **(training.get("overrides") or {})),
        budget_name=preset,
        work_dir=str(work_dir),  # survives a worker restart, so a reclaimed job resumes
    )
    from .stage_store import StorageStageStore

    store = StorageStageStore(storage, settings, stop) if settings.stage_cache else None
    progress = ProgressWriter(job_id, settings, attempt, EtaEstimator.from_training(cfg.training))
    result = compress(cfg, on_progress=progress, should_stop=stop, stage_store=store)
    _add_onnx_artifact(Path(result.output_dir))
    artifacts = _upload(job_id, Path(result.output_dir), storage)
    return result.metrics, artifacts


def _add_onnx_artifact(out_dir: Path) -> None:
    """The deployable ONNX model (integer kernels, tokenizer, labels) as model-onnx.zip beside the
    checkpoint, so it is uploaded with its sha256 like every other artifact."""
    from xtc_core.export_onnx import ONNX_ARCHIVE, export_onnx_archive

    if export_onnx_archive(out_dir, out_dir / ONNX_ARCHIVE) is None:
        log.info("no ONNX exporter for this architecture; the job keeps only the checkpoint")


def _data_source(task: str | dict[str, Any], settings: Settings, storage: Storage, folder: Path):
    from xtc_core.config import DataSource

    if isinstance(task, str):
        return DataSource(task=task, glue_dir=glue_dir_or_hub(settings.glue_dir))
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


def glue_dir_or_hub(glue_dir: str | None) -> str | None:
    """The GLUE folder, or None (the hub) when it is missing or empty: compose mounts an empty folder
    when the operator has no GLUE files, and the documented behaviour is then the hub."""
    if not glue_dir:
        return None
    folder = Path(glue_dir).expanduser()
    try:
        return glue_dir if folder.is_dir() and any(folder.iterdir()) else None
    except OSError:
        return None


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
