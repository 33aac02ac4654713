from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# The hub is never reachable from tests: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """Real GLUE files: $XTC_GLUE_DIR, else ../shared/data/glue beside the checkout."""
    path = Path(os.environ.get("XTC_GLUE_DIR", ROOT.parent / "shared" / "data" / "glue"))
    if not (path / "SST-2" / "dev.tsv").exists():
        pytest.fail(f"GLUE data not found at {path}; set XTC_GLUE_DIR")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from tiny_models import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert4", layers=4)


@pytest.fixture(scope="session")
def tiny_headless_model_dir(tmp_path_factory) -> Path:
    from tiny_models import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert4-base", layers=4, with_head=False)
