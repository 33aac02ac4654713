"""Which models a request may name: a bundled model, a hub id, or a folder inside the server's model
directories (XTC_MODEL_DIRS). Nothing else on the server's disk is reachable, and the answer for a path
outside those directories is the same whether or not it exists (it is never looked at)."""

from __future__ import annotations

import os
import re

from xtc_core.errors import ModelLoadError
from xtc_core.model_ref import parse_model_ref

from .errors import ApiError

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


def model_dirs(setting: str) -> list[str]:
    """XTC_MODEL_DIRS: absolute folders separated by os.pathsep (":" on Linux), like PATH."""
    return [os.path.normpath(d) for d in setting.split(os.pathsep) if d.strip() and os.path.isabs(d.strip())]


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _refused(ref: str) -> ApiError:
    shown = ref if len(ref) <= 80 else ref[:77] + "..."
    return ApiError(422, "unknown_model",
                    f"model {shown!r} is not a bundled model (bundled:NAME), a hub id (owner/name) or a "
                    "folder inside the server's model directories")


def check_model_ref(ref: str, dirs_setting: str) -> str:
    """The reference as the worker should receive it, or ApiError 422 `unknown_model`."""
    ref = ref.strip()
    if ref.startswith("bundled:"):
        try:
            parse_model_ref(ref)
        except ModelLoadError as exc:
            raise ApiError(422, "unknown_model", exc.message) from None
        return ref
    if not ref.startswith("/"):
        if _HUB_ID.match(ref) and not ref.startswith("."):
            return ref
        raise _refused(ref)
    roots = model_dirs(dirs_setting)
    path = os.path.normpath(ref)
    if not _inside(path, roots):
        raise _refused(ref)  # decided on the string alone: the disk is not consulted
    try:
        real = os.path.realpath(path)
        if not _inside(real, [os.path.realpath(r) for r in roots]):
            raise _refused(ref)  # a symlink out of the model directories
        if not os.path.isdir(real):
            raise ApiError(422, "unknown_model", f"{ref}: no such model folder in the model directories")
        if not os.path.isfile(os.path.join(real, "config.json")):
            raise ApiError(422, "unknown_model", f"{ref}: folder has no config.json, so it is not a model")
    except OSError:
        raise _refused(ref) from None
    return real
