"""xtc_core is a pure library: no service imports, and its torch-free parts stay torch-free."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "xtc_core"
FORBIDDEN = {"api", "worker", "celery", "kombu", "sqlalchemy", "alembic", "boto3", "botocore", "fastapi",
             "redis", "psycopg"}


def test_no_service_imports_anywhere_in_xtc_core():
    offenders = []
    for file in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{file.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders


def test_importing_the_whole_library_loads_no_service_module():
    code = ("import sys, xtc_core.pipeline, xtc_core.cli, xtc_core.checkpoint, xtc_core.evaluate;"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r});"
            "print(bad); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torch_free_parts_do_not_load_torch():
    code = ("import sys, xtc_core, xtc_core.tasks, xtc_core.tabular, xtc_core.model_ref, xtc_core.errors,"
            " xtc_core.config, xtc_core.progress, xtc_core.data, xtc_core.metrics;"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
