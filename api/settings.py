"""Service settings, read from the environment (prefix ``XTC_``) or passed explicitly in tests."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XTC_", extra="ignore")

    # Embedded defaults: SQLite + a local folder + a filesystem broker under ./xtc-data.
    data_dir: str = "./xtc-data"
    database_url: str = "sqlite:///./xtc-data/xtc.db"
    broker_url: str = "filesystem://"
    # Used by the filesystem broker only; API and worker must agree on it.
    broker_folder: str = "./xtc-data/broker"
    queue: str = "xtc"
    storage_url: str = "file://./xtc-data/artifacts"
    s3_endpoint_url: str | None = None  # MinIO: http://minio:9000
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"

    glue_dir: str | None = None  # GLUE files in the official layout; None: the hub (needs internet)
    work_dir: str = "./xtc-data/work"  # per-job resumable training state
    # Server folders a request may name as its model, separated by ":" (like PATH). Empty: none; bundled
    # models and hub ids are always allowed.
    model_dirs: str = ""

    max_upload_bytes: int = 50 * 1024 * 1024  # a dataset file
    max_body_bytes: int = 1024 * 1024  # any other request body (job requests are a few hundred bytes)
    auth_cache_s: float = 30.0  # how long a valid key is remembered per API process (0: never)

    # The longest job we accept (our own deadline in the worker, and Celery's limits for prefork).
    job_soft_time_limit_s: int = 6 * 3600
    job_hard_time_limit_s: int = 6 * 3600 + 300

    # Supervision (docs/reliability.md). A running job's worker refreshes heartbeat_at every
    # heartbeat_interval_s from a thread; a `running` job whose heartbeat is older than job_lease_s
    # has lost its worker and is re-queued by the supervisor (a loop in every worker process).
    heartbeat_interval_s: float = 5.0
    job_lease_s: float = 60.0
    supervisor_interval_s: float = 5.0
    # A `queued` job not claimed this long after its id went to the broker is sent again (the
    # message may have been lost, e.g. Redis restarted empty); the wait doubles at each resend so a
    # long backlog is not flooded with duplicates (duplicates are harmless: the claim is conditional).
    queued_grace_s: float = 120.0
    # Claims a job may have; a job whose worker is lost this many times fails with `worker_lost`.
    job_max_attempts: int = 3
    # With the supervisor in charge, the broker's redelivery of an unacknowledged message is only a
    # fast path; a redelivery of a still-running job is a harmless duplicate (the claim skips it).
    broker_visibility_timeout_s: int = 3600

    progress_interval_s: float = 1.0  # at most one progress event per interval (plus stage changes)
    cancel_check_interval_s: float = 1.0  # how often should_stop reads the DB

    # Issue 9. Finished stage 0/1 weights are kept in the artifact storage under stage-cache/<key>,
    # so any later job (a sweep's other points, a retry, a later sweep) with the same inputs loads them.
    stage_cache: bool = True
    max_sweep_points: int = 24
    # Webhooks: deliveries to loopback/private/link-local addresses are refused unless allowed
    # (a URL a tenant gives must not reach the operator's internal network).
    webhook_allow_private: bool = False
    webhook_delivery_in_api: bool = True  # the API process runs the delivery loop (one is enough)
    webhook_poll_s: float = 1.0
    webhook_timeout_s: float = 10.0
    webhook_claim_s: float = 60.0  # a claimed delivery whose sender died is retried after this
    webhook_max_attempts: int = 10
    webhook_backoff_base_s: float = 5.0  # 5 s, 10 s, 20 s... (plus jitter), capped below
    webhook_backoff_max_s: float = 3600.0
    webhook_progress_interval_s: float = 30.0  # at most one progress webhook per job/sweep per interval
    webhook_scan_window_s: int = 7 * 86400  # finished jobs older than this raise no new webhooks

    @property
    def visibility_timeout_s(self) -> int:
        return self.broker_visibility_timeout_s


@lru_cache
def get_settings() -> Settings:
    return Settings()
