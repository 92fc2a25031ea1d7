"""FHIR R4 under /fhir, with the API's bearer tokens: the CapabilityStatement, the intake Questionnaire, a
transaction Bundle that enrolls a patient, and reads and searches of what followup holds.

Thin: parse, call one service, answer FHIR JSON; a refusal is an OperationOutcome naming the element at fault.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from followup.core.storable import storable_json
from followup.fhir import JSON
from followup.fhir.capability import SEARCHES
from followup.fhir.outcome import FhirError, operation_outcome, refuse
from followup.fhir.search import parse_search
from followup.services import fhir_intake, fhir_read, fhir_tasks
from followup.web.deps import RuntimeDep, TokenDep, actor


class FhirResponse(JSONResponse):
    media_type = JSON


STATUS = {"structure": 400, "rule": 422, "not_found": 404, "conflict": 409}
REFUSALS: dict[int | str, dict[str, Any]] = {
    code: {"description": "OperationOutcome", "content": {JSON: {}}} for code in sorted(set(STATUS.values()))
}
router = APIRouter(prefix="/fhir", tags=["fhir"], default_response_class=FhirResponse, responses=REFUSALS)


def fhir_json(data: dict[str, Any], status: int = 200) -> JSONResponse:
    # An OperationOutcome may quote what was sent, and JSON's "\ud800" cannot be encoded: made storable first.
    return FhirResponse(storable_json(data), status_code=status)


def refused(exc: FhirError) -> JSONResponse:
    return fhir_json(operation_outcome(exc.issues), STATUS[exc.problem])


@router.get("/metadata")
def metadata(rt: RuntimeDep) -> JSONResponse:
    """The CapabilityStatement. Public, as FHIR clients read it before they authenticate; it says nothing of
    patients."""
    return fhir_json(fhir_read.metadata(rt))


@router.get("/Questionnaire/intake")
def intake_questionnaire(rt: RuntimeDep, _tok: TokenDep) -> JSONResponse:
    """The intake as a Questionnaire, built from the triage contract, pages.toml and clinic/intake.toml."""
    return fhir_json(fhir_read.intake_questionnaire(rt))


@router.get("/Questionnaire")
def questionnaires(rt: RuntimeDep, _tok: TokenDep) -> JSONResponse:
    """The one Questionnaire there is, as a searchset."""
    return fhir_json(fhir_read.questionnaires(rt))


@router.post("")
async def transaction(request: Request, rt: RuntimeDep, tok: TokenDep) -> JSONResponse:
    """Enroll a patient: a transaction Bundle holding a Patient (with an identifier) and a QuestionnaireResponse
    to Questionnaire/intake. Sent again, it enrolls no one twice and answers with the same resources."""
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError, RecursionError):
        return refused(refuse("structure", "Bundle", "the body is not JSON (or is nested past reason)"))
    try:
        return fhir_json(await run_in_threadpool(fhir_intake.transaction, rt, body, actor(tok)))
    except FhirError as exc:
        return refused(exc)


@router.put("/Task/{rid}")
async def update_task(rid: str, request: Request, rt: RuntimeDep, tok: TokenDep) -> JSONResponse:
    """Acknowledge, book or close an escalation from the clinic's system: PUT its Task with status accepted,
    in-progress or completed (a note on a completed Task is the closing note)."""
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError, RecursionError):
        return refused(refuse("structure", "Task", "the body is not JSON"))
    try:
        return fhir_json(await run_in_threadpool(fhir_tasks.update_task, rt, rid, body, actor(tok)))
    except FhirError as exc:
        return refused(exc)


def _search_route(kind: str) -> Any:
    def search(request: Request, rt: RuntimeDep, _tok: TokenDep) -> JSONResponse:
        try:
            q = parse_search(list(request.query_params.multi_items()), list(SEARCHES[kind]))
        except FhirError as exc:
            return refused(exc)
        return fhir_json(fhir_read.search(rt, kind, q))

    search.__doc__ = f"Search {kind}: {', '.join(SEARCHES[kind]) or 'no parameters'}, _count; paged by next links."
    return search


def _read_route(kind: str) -> Any:
    def read(rid: str, rt: RuntimeDep, _tok: TokenDep) -> JSONResponse:
        try:
            return fhir_json(fhir_read.read(rt, kind, rid))
        except fhir_read.NotFound:
            return refused(refuse("not_found", kind, f"no {kind} with id {rid[:64]!r}", "not-found"))

    read.__doc__ = f"Read one {kind}."
    return read


for _kind in fhir_read.TABLES:
    router.add_api_route(f"/{_kind}", _search_route(_kind), methods=["GET"], name=f"search_{_kind}")
    router.add_api_route(f"/{_kind}/{{rid}}", _read_route(_kind), methods=["GET"], name=f"read_{_kind}")
