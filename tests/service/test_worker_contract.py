"""The worker applies every compression option the API accepts, and refuses the ones it does not know
(a server upgraded before its workers must not get a job silently trained without its options)."""

from __future__ import annotations

import pytest

from api.schemas import Compression
from worker.run_job import COMPRESSION_KEYS, check_compression_keys
from xtc_core.errors import ConfigError


def test_every_option_the_api_accepts_is_one_the_worker_applies():
    assert set(Compression.model_fields) == COMPRESSION_KEYS
    check_compression_keys(Compression(embedding_bits=8, weight_groups=64).model_dump(mode="json"))


def test_an_option_from_a_newer_server_fails_the_job_with_a_reason():
    with pytest.raises(ConfigError, match="does not know the compression option.*rotation_bits.*upgrade"):
        check_compression_keys({"weight_bits": 1, "rotation_bits": 4})
