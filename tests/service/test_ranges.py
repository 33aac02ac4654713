"""HTTP Range on artifact downloads: parsing, both storage backends' partial reads."""

from __future__ import annotations

import pytest

from api.errors import ApiError
from api.ranges import parse_range
from api.storage import LocalStorage


@pytest.mark.parametrize("header,expected", [
    ("bytes=0-", (0, 99)), ("bytes=10-19", (10, 19)), ("bytes=90-500", (90, 99)), ("bytes=-5", (95, 99)),
    ("bytes=-500", (0, 99)), (None, None), ("bytes=0-1,5-6", None), ("items=0-1", None),
])
def test_parse_range(header, expected):
    got = parse_range(header, 100)
    assert (got.start, got.end) == expected if expected else got is None


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=5-4", "bytes=-0"])
def test_unsatisfiable_range(header):
    with pytest.raises(ApiError) as exc:
        parse_range(header, 100)
    assert exc.value.status == 416 and exc.value.headers == {"Content-Range": "bytes */100"}


def test_local_storage_streams_a_range(tmp_path):
    data = bytes(range(256)) * 9000  # spans several read chunks
    (tmp_path / "src").write_bytes(data)
    store = LocalStorage(tmp_path / "root")
    store.put_file("jobs/j/a.bin", tmp_path / "src")
    assert b"".join(store.stream("jobs/j/a.bin")) == data
    assert b"".join(store.stream("jobs/j/a.bin", 1_500_000)) == data[1_500_000:]
    assert b"".join(store.stream("jobs/j/a.bin", 7, 1_200_006)) == data[7:1_200_007]


def test_download_route_ranges(alice_live, settings, tiny_model_dir):
    """Against the live stack (S3 storage): 206 with Content-Range, If-Range, 416."""
    from .support import TERMINAL, job_body, wait_for

    job_id = alice_live.post("/jobs", json=job_body(tiny_model_dir)).json()["id"]
    assert wait_for(alice_live, job_id, TERMINAL)["status"] == "succeeded"
    url = f"/jobs/{job_id}/artifacts/xtc.json"
    full = alice_live.get(url)
    size, etag = len(full.content), full.headers["etag"]
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    part = alice_live.get(url, headers={"Range": "bytes=10-", "If-Range": etag})
    assert part.status_code == 206 and part.content == full.content[10:]
    assert part.headers["content-range"] == f"bytes 10-{size - 1}/{size}"
    assert int(part.headers["content-length"]) == size - 10
    tail = alice_live.get(url, headers={"Range": "bytes=-7"})
    assert tail.status_code == 206 and tail.content == full.content[-7:]
    stale = alice_live.get(url, headers={"Range": "bytes=10-", "If-Range": '"another-version"'})
    assert stale.status_code == 200 and stale.content == full.content
    bad = alice_live.get(url, headers={"Range": f"bytes={size}-"})
    assert bad.status_code == 416 and bad.json()["error"]["code"] == "range_not_satisfiable"
    assert bad.headers["content-range"] == f"bytes */{size}"
