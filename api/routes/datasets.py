"""Dataset uploads: size-limited, validated on arrival, then stored under ``datasets/<id>/``."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, UploadFile
from sqlalchemy.orm import Session

from ..auth import Principal, current_tenant
from ..db import repo
from ..db.models import Dataset, new_id
from ..deps import Services, db_session, services
from ..errors import ApiError, not_found
from ..schemas import DatasetOut, error_responses

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=error_responses(400, 401, 404, 422))

FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl"}


def dataset_out(ds: Dataset) -> DatasetOut:
    return DatasetOut(id=ds.id, filename=ds.filename, format=ds.format, size=ds.size, sha256=ds.sha256,
                      columns=ds.columns, summary=ds.summary, created_at=repo.as_utc(ds.created_at))


def _safe_name(name: str | None) -> str:
    base = Path(name or "data").name
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[:200] or "data"


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"upload exceeds the limit of {limit} bytes")


@router.post("", status_code=201, response_model=DatasetOut, responses=error_responses(413, 415, 503))
def upload_dataset(
    file: UploadFile = File(...),
    text_column: str = Form(...),
    label_column: str = Form(...),
    text_pair_column: str | None = Form(default=None),
    regression: bool = Form(default=False),
    tenant: Principal = Depends(current_tenant),
    session: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> DatasetOut:
    from xtc_core.errors import DataError
    from xtc_core.tabular import validate_user_file  # torch-free

    filename = _safe_name(file.filename)
    fmt = FORMATS.get(Path(filename).suffix.lower())
    if fmt is None:
        raise ApiError(415, "unsupported_format", f"{filename}: upload a .tsv, .csv or .jsonl file")
    limit = svc.settings.max_upload_bytes
    with tempfile.TemporaryDirectory(prefix="xtc-upload-") as tmp:
        # Named like the user's file so validation messages point at their file, not a temp name.
        path = Path(tmp) / filename
        digest, size = hashlib.sha256(), 0
        with open(path, "wb") as out:
            while chunk := file.file.read(1024 * 1024):
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                digest.update(chunk)
                out.write(chunk)
        try:
            summary = validate_user_file(
                path, text_column=text_column, label_column=label_column,
                text_pair_column=text_pair_column or None, regression=regression,
            )
        except DataError as exc:
            raise ApiError(422, "invalid_dataset", exc.message.replace(str(path), filename)) from None
        ds_id = new_id("ds")
        key = f"datasets/{ds_id}/{filename}"
        svc.storage.put_file(key, path)
    columns = {"text": text_column, "text_pair": text_pair_column or None, "label": label_column,
               "regression": regression}
    ds = repo.create_dataset(
        session, id=ds_id, tenant_id=tenant.id, filename=filename, format=fmt, size=size,
        sha256=digest.hexdigest(), storage_key=key, columns=columns, summary=_jsonable(summary),
    )
    session.commit()
    return dataset_out(ds)


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: str, tenant: Principal = Depends(current_tenant),
                session: Session = Depends(db_session)) -> DatasetOut:
    ds = repo.get_dataset(session, tenant.id, dataset_id)
    if ds is None:
        raise not_found("dataset", dataset_id)
    return dataset_out(ds)


def _jsonable(summary: object) -> dict | None:
    if not isinstance(summary, dict):
        return None
    return json.loads(json.dumps(summary, default=str))

