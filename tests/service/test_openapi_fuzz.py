"""schemathesis against the app's own OpenAPI document: no server error, no undocumented status code,
no undocumented content type, responses that match their schemas. Bounded by a fixed example count
per operation (and derandomized, so a run is repeatable)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = 30


@pytest.mark.timeout(300)
def test_openapi_conformance(idle_url, keys):
    schema = schemathesis.openapi.from_url(f"{idle_url}/openapi.json")
    headers = {"Authorization": f"Bearer {keys['alice']}"}
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            case.call_and_validate(base_url=idle_url, headers=headers, checks=checks)

        fuzz()
