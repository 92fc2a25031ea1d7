"""Schemathesis over the app's own OpenAPI schema, in process (ASGI), with a valid API token: for every operation,
data that fits the schema and data that does not, and no answer is a 5xx or breaks the schema. SQLite and
PostgreSQL; bounded to a few hundred requests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from conftest import triage_body
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from followup.runtime import Runtime
from followup.web.app import create_app

EXAMPLES = {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 20}  # per operation
# Status codes are not all declared in the schema (401, 404, 409 come from HTTPException): what is checked is that
# nothing fails on the server and that every answer the schema does describe has the shape it says.
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, response_headers_conformance]


@pytest.fixture
def app_with_data(rt: Runtime, client: TestClient, auth: dict[str, str]) -> Iterator[object]:
    """The app with an enrolled patient and an escalated one, so ids the fuzzer tries can hit real rows."""
    client.post("/api/triage", json=triage_body(), headers=auth)
    client.post("/api/triage", json=triage_body(phone="+13105550143", email="b@example.org",
                                                answers={"breathing": True}), headers=auth)
    yield create_app(runtime=rt, background=False)


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=str)
def test_no_operation_fails_on_the_server_or_breaks_its_schema(app_with_data: object, auth: dict[str, str],
                                                                 mode: GenerationMode) -> None:
    """Every operation in /openapi.json, fed generated valid (or invalid) requests with a valid token, answers
    without a 5xx and with the shape the schema declares."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app_with_data)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/triage", "/api/patients/{patient_id}", "/api/escalations"}
    for operation in operations:
        inputs = len(operation.path_parameters) + len(operation.query) + len(operation.body)
        if mode is GenerationMode.NEGATIVE and not inputs:
            continue  # nothing declared, so nothing can be sent that breaks the declaration

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Case) -> None:
            case.call_and_validate(headers=auth, checks=CHECKS)

        fuzz()
