"""XTC: extreme compression of BERT-family models (layer reduction + 1/2-bit QAT + one-stage KD).

The public names are imported lazily so that torch-free parts (``xtc_core.tasks``,
``xtc_core.tabular``, ``xtc_core.errors``) can be used by light processes such as the HTTP API
without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CompressConfig": "xtc_core.config",
    "TrainingConfig": "xtc_core.config",
    "DataSource": "xtc_core.config",
    "BUDGETS": "xtc_core.config",
    "XTCError": "xtc_core.errors",
    "ConfigError": "xtc_core.errors",
    "ModelLoadError": "xtc_core.errors",
    "DataError": "xtc_core.errors",
    "Cancelled": "xtc_core.errors",
    "ProgressEvent": "xtc_core.progress",
    "compress": "xtc_core.pipeline",
    "CompressResult": "xtc_core.pipeline",
    "load_compressed": "xtc_core.checkpoint",
    "evaluate_checkpoint": "xtc_core.evaluate",
    "inspect_checkpoint": "xtc_core.inspect",
    "sweep": "xtc_core.sweep",
    "SweepGrid": "xtc_core.sweep",
    "SweepResult": "xtc_core.sweep",
    "LocalStageStore": "xtc_core.stage_cache",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xtc_core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
