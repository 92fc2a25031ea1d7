"""Schemathesis over the app's own OpenAPI schema, in process (ASGI), with a valid API token: for every operation,
data that fits the schema and data that does not, and no answer is a 5xx or breaks the schema. SQLite and
PostgreSQL; bounded to a few hundred requests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from factories import triage_body
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
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
    client.post(
        "/api/triage",
        json=triage_body(phone="+13105550143", email="b@example.org", answers={"breathing": True}),
        headers=auth,
    )
    yield create_app(runtime=rt, background=False)


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=str)
def test_no_operation_fails_on_the_server_or_breaks_its_schema(
    app_with_data: object, auth: dict[str, str], mode: GenerationMode
) -> None:
    """Every operation in /openapi.json, fed generated valid (or invalid) requests with a valid token, answers
    without a 5xx and with the shape the schema declares."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app_with_data)
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the app's own schema has operations schemathesis cannot read"
    assert {op.path for op in operations} >= {"/api/triage", "/api/patients/{patient_id}", "/api/escalations"}
    for operation in operations:
        inputs = len(operation.path_parameters) + len(operation.query) + len(operation.body)
        if mode is GenerationMode.NEGATIVE and not inputs:
            continue  # nothing declared, so nothing can be sent that breaks the declaration

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Case) -> None:
            case.call_and_validate(headers=auth, checks=CHECKS)

        fuzz()


BIG = "9" * 25
HAND_PICKED = [
    ("GET", "/api/patients?q=%00", None, 200),
    ("GET", "/api/patients?q=a%00b&status=%00", None, 200),
    ("GET", f"/api/patients?offset={BIG}", None, 422),
    ("GET", f"/api/patients/{BIG}", None, 422),
    ("GET", "/api/patients/0", None, 422),
    ("POST", f"/api/patients/{BIG}/pause", None, 422),
    ("GET", f"/api/escalations/{BIG}", None, 422),
    ("POST", "/api/escalations/1/close", {"note": "seen\x00, called back"}, 200),
    ("POST", "/api/triage", "name-nul", 422),
    ("POST", "/api/triage", "name-surrogate", 422),
    ("POST", "/api/triage", "consent-nul", 422),
    ("POST", "/api/triage", "email-control", 422),
    ("POST", "/api/triage", "deep-json", 400),
]


def _body(kind: object) -> dict[str, object]:
    if kind == "name-nul":
        return {"json": triage_body(name="Ana\x00")}
    if kind == "name-surrogate":  # a JSON escape no client should send, and no database can store
        return {
            "content": triage_body_json().replace('"Ana Diaz"', '"Ana \\ud800"'),
            "headers": {"Content-Type": "application/json"},
        }
    if kind == "consent-nul":
        return {"json": triage_body(consent_text="I agree\x00")}
    if kind == "email-control":
        return {"json": triage_body(email="ana\x1b@example.org")}
    if kind == "deep-json":
        return {"content": "[" * 10_000 + "]" * 10_000, "headers": {"Content-Type": "application/json"}}
    return {"json": kind} if kind is not None else {}


def triage_body_json() -> str:
    import json

    return json.dumps(triage_body())


def test_hand_picked_api_inputs_get_their_answer(app_with_data: object, auth: dict[str, str]) -> None:
    """Inputs a generator seldom builds (NUL, lone surrogates, ids past the database's integers, deep JSON) get a
    4xx or are cleaned, on both databases, never a 5xx."""
    got = {}
    with TestClient(app_with_data, raise_server_exceptions=False) as c:  # type: ignore[arg-type]
        for method, url, body, _ in HAND_PICKED:
            extra = _body(body)
            headers = {**auth, **extra.pop("headers", {})}  # type: ignore[dict-item]
            got[(method, url, str(body))] = c.request(method, url, headers=headers, **extra).status_code  # type: ignore[arg-type]
    assert got == {(method, url, str(body)): expected for method, url, body, expected in HAND_PICKED}
