"""The API process must never import torch or transformers (the api image ships without them)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_api_never_imports_torch(tmp_path):
    # A fresh interpreter serves real requests (job validation, a dataset upload) on SQLite.
    script = textwrap.dedent(f"""
        import sys
        from fastapi.testclient import TestClient
        import api.cli, api.app
        from api.embedded import embedded_settings, ensure_local_key
        from api.migrate import upgrade
        settings = embedded_settings({str(tmp_path)!r})
        upgrade(settings.database_url)
        key = ensure_local_key(settings)
        with TestClient(api.app.create_app(settings)) as c:
            h = {{"Authorization": "Bearer " + key}}
            assert c.post("/jobs", json={{"model": "bundled:minilm-l6", "task": "sst2"}},
                          headers=h).status_code == 201
            assert c.post("/jobs", json={{"model": "bundled:minilm-l6", "task": "x"}},
                          headers=h).status_code == 422
            r = c.post("/datasets", files={{"file": ("a.csv", "text,label\\ngood,1\\nbad,0\\n")}},
                       data={{"text_column": "text", "label_column": "label"}}, headers=h)
            assert r.status_code == 201, r.text
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
        assert not loaded, loaded
        print("clean")
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("clean")
