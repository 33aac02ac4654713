"""A thin httpx wrapper over the service's REST API; every failure becomes a ClientError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from .errors import AUTH, NOT_FOUND, UNAVAILABLE, USAGE, ClientError


def _exit_code(status: int) -> int:
    if status in (401, 403):
        return AUTH
    if status == 404:
        return NOT_FOUND
    if status >= 500:
        return UNAVAILABLE
    return USAGE


def raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        response.read()
        err = response.json()["error"]
        code, message = err["code"], err["message"]
    except Exception:
        code, message = None, response.reason_phrase or "unexpected response"
    detail = f"{message} ({code})" if code else message
    raise ClientError(f"HTTP {response.status_code}: {detail}", _exit_code(response.status_code), code)


class Api:
    def __init__(self, server: str, key: str, timeout: float = 30.0):
        self.server = server
        self.http = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {key}"},
                                 timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from None
        raise_for_status(response)
        return response.json()

    def unreachable(self, exc: Exception) -> ClientError:
        return ClientError(f"cannot reach the XTC server at {self.server} ({type(exc).__name__}); "
                           "is it running? (--server / XTC_SERVER)", UNAVAILABLE)

    @contextmanager
    def stream(self, path: str, headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        try:
            with self.http.stream("GET", path, headers=headers) as response:
                raise_for_status(response)
                yield response
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from None

    # ---- endpoints --------------------------------------------------------------------------

    def create_job(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", "/jobs", json=body, headers=headers)

    def list_jobs(self, status: str | None = None, limit: int = 20, cursor: str | None = None) -> dict:
        params = {k: v for k, v in {"status": status, "limit": limit, "cursor": cursor}.items() if v}
        return self.request("GET", "/jobs", params=params)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("POST", f"/jobs/{job_id}/cancel")

    def events(self, job_id: str, after: int | None = None, limit: int = 1000) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        return self.request("GET", f"/jobs/{job_id}/events", params=params)

    def artifacts(self, job_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/jobs/{job_id}/artifacts")["data"]

    def upload_dataset(self, path: Path, text_column: str, label_column: str,
                       text_pair_column: str | None, regression: bool) -> dict[str, Any]:
        data = {"text_column": text_column, "label_column": label_column,
                "regression": str(regression).lower()}
        if text_pair_column:
            data["text_pair_column"] = text_pair_column
        try:
            fh = open(path, "rb")
        except OSError as exc:
            raise ClientError(f"{path}: cannot read the dataset file ({exc.strerror})", USAGE) from None
        with fh:
            return self.request("POST", "/datasets", files={"file": (path.name, fh)}, data=data)

    # ---- sweeps ---------------------------------------------------------------------------------

    def create_sweep(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", "/sweeps", json=body, headers=headers)

    def list_sweeps(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in {"limit": limit, "cursor": cursor}.items() if v}
        return self.request("GET", "/sweeps", params=params)

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        return self.request("GET", f"/sweeps/{sweep_id}")

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        return self.request("POST", f"/sweeps/{sweep_id}/cancel")
