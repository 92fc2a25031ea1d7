"""The clinic's API (bearer token): triage, patients, their timeline and schedule, escalations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query
from pydantic import BaseModel

from followup.core.bulk import RawRow
from followup.core.storable import storable
from followup.core.triage import InputError, TriageIn
from followup.services import patients as svc
from followup.services.bulk_import import import_rows
from followup.services.enrollment import submit_triage
from followup.web.deps import MAX_ID, RowId, RuntimeDep, TokenDep, actor

router = APIRouter(prefix="/api", tags=["api"])


def input_error(exc: InputError) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", *exc.field.split(".")], "msg": exc.message, "type": "value_error"}])


class StepOut(BaseModel):
    step_id: str
    kind: str
    channel: str
    due_at: datetime
    status: str


class TriageOut(BaseModel):
    patient_id: int
    triage_id: int
    disposition: Literal["enrolled", "escalated"]
    created: bool
    escalation_id: int | None
    red_flags: list[str]
    steps: list[StepOut]


@router.post("/triage", status_code=201, response_model=TriageOut)
def triage(body: TriageIn, rt: RuntimeDep, tok: TokenDep) -> Any:
    """Record a triage: enroll the patient in the follow-up program, or escalate a red flag to the clinic."""
    try:
        result = submit_triage(rt, body, source="api", actor=actor(tok))
    except InputError as exc:
        raise input_error(exc) from None
    return TriageOut(
        patient_id=result.patient_id,
        triage_id=result.triage_id,
        disposition=result.disposition,
        created=result.created,
        escalation_id=result.escalation_id,
        red_flags=result.red_flags,
        steps=[StepOut(**vars(s)) for s in result.steps],
    )


BATCH_MAX = 10_000


class BatchRowOut(BaseModel):
    index: int
    external_id: str | None
    status: Literal["enrolled", "escalated", "already", "rejected"]
    patient_id: int | None = None
    field: str | None = None
    message: str | None = None


class BatchOut(BaseModel):
    enrolled: int
    escalated: int
    already: int
    rejected: int
    rows: list[BatchRowOut]


@router.post("/triage/batch", response_model=BatchOut)
def triage_batch(
    rt: RuntimeDep, tok: TokenDep, body: Annotated[list[Any], Body(min_length=1, max_length=BATCH_MAX)]
) -> Any:
    """Enroll many patients at once: a list of triage bodies, each with the clinic's `external_id`. Each row is
    checked as `POST /api/triage` checks one; the answer says what became of each, by its index: `enrolled`,
    `escalated`, `already` (that external_id is enrolled: nothing written) or `rejected` (`field` and `message`
    say why; a contact another patient holds is rejected, that patient untouched). A row is written whole or
    not at all; sending the same list again enrolls no one twice."""
    rows = [RawRow(i, x) if isinstance(x, dict) else RawRow(i, None, "not a JSON object") for i, x in enumerate(body)]
    outcomes: list[BatchRowOut] = []
    tally = import_rows(
        rt,
        rows,
        actor=actor(tok),
        source="api",
        report=lambda o: outcomes.append(
            BatchRowOut(index=o.where, **{k: v for k, v in vars(o).items() if k != "where"})
        ),
    )
    return BatchOut(
        enrolled=tally.enrolled,
        escalated=tally.escalated,
        already=tally.already,
        rejected=tally.rejected,
        rows=outcomes,
    )


def _patient_summary(p: Any) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "phone": p.phone,
        "email": p.email,
        "channel": p.channel,
        "timezone": p.timezone,
        "language": p.language,
        "status": p.status,
        "sms_state": p.sms_state,
        "email_state": p.email_state,
        "enrolled_at": p.enrolled_at,
        "created_at": p.created_at,
    }


@router.get("/patients")
def list_patients(
    rt: RuntimeDep,
    _tok: TokenDep,
    q: str | None = Query(None, max_length=100),
    status: str | None = Query(None, max_length=20),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=MAX_ID),
    before: int | None = Query(None, ge=1, le=MAX_ID),
) -> dict[str, Any]:
    """Search patients by name, number or email, optionally by status, newest first. For the next page pass
    `next_before` as `before` (keyset: as fast deep in the list as at its start). `total` is counted up to
    10,001."""
    total, page = svc.search(rt, storable(q) if q else q, storable(status) if status else status, limit, offset, before)
    return {"total": total, "patients": [_patient_summary(p) for p in page.rows], "next_before": page.next_before}


def _message(x: Any) -> dict[str, Any]:
    return {
        "message_id": x.id,
        "kind": x.kind,
        "step_id": x.step_id,
        "channel": x.channel,
        "due_at": x.due_at,
        "expires_at": x.expires_at,
        "status": x.status,
        "urgent": x.urgent,
        "reason": x.reason,
    }


def _escalation(e: Any) -> dict[str, Any]:
    return {
        "id": e.id,
        "patient_id": e.patient_id,
        "level": e.level,
        "tier": e.tier,
        "status": e.status,
        "source": e.source,
        "criteria": e.criteria,
        "evidence": e.evidence,
        "inbound_ids": e.inbound_ids,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
        "acknowledged_at": e.acknowledged_at,
        "acknowledged_by": e.acknowledged_by,
        "closed_at": e.closed_at,
        "note": e.note,
    }


@router.get("/patients/{patient_id}")
def get_patient(patient_id: RowId, rt: RuntimeDep, _tok: TokenDep) -> dict[str, Any]:
    """One patient: details, the timeline of every message in and out with its states, and what comes next."""
    try:
        d = svc.detail(rt, patient_id)
    except svc.NotFound:
        raise HTTPException(404, "no such patient") from None
    return {
        **_patient_summary(d["patient"]),
        "timeline": d["timeline"],
        "upcoming": [_message(x) for x in d["upcoming"]],
        "escalations": [_escalation(e) for e in d["escalations"]],
        "triages": [
            {
                "id": t.id,
                "source": t.source,
                "answers": t.answers,
                "red_flags": t.red_flags,
                "disposition": t.disposition,
                "created_at": t.created_at,
            }
            for t in d["triages"]
        ],
        "consents": [
            {"channel": c.channel, "action": c.action, "source": c.source, "text": c.text, "at": c.at}
            for c in d["consents"]
        ],
    }


@router.post("/patients/{patient_id}/{action}")
def patient_action(
    patient_id: RowId, action: Literal["pause", "resume", "unenroll"], rt: RuntimeDep, tok: TokenDep
) -> dict[str, Any]:
    """Pause, resume or unenroll a patient."""
    try:
        p = svc.change_status(rt, patient_id, action, actor(tok))
    except svc.NotFound:
        raise HTTPException(404, "no such patient") from None
    except svc.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    return _patient_summary(p)


@router.get("/schedule")
def schedule(rt: RuntimeDep, _tok: TokenDep, limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
    """The next scheduled messages across all patients."""
    return [{**_message(x), "patient_id": x.patient_id} for x in svc.next_scheduled(rt, limit)]


@router.get("/escalations")
def list_escalations(
    rt: RuntimeDep,
    _tok: TokenDep,
    status: Literal["open", "acknowledged", "booked", "closed"] | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_ID),
    before: int | None = Query(None, ge=1, le=MAX_ID),
) -> list[dict[str, Any]]:
    """Escalations, newest first, with their criteria and evidence. For the next page pass the last id as
    `before` (keyset)."""
    return [_escalation(e) for e in svc.escalations(rt, status, limit, offset, before).rows]


@router.get("/escalations/{escalation_id}")
def get_escalation(escalation_id: RowId, rt: RuntimeDep, _tok: TokenDep) -> dict[str, Any]:
    try:
        return _escalation(svc.escalation(rt, escalation_id))
    except svc.NotFound:
        raise HTTPException(404, "no such escalation") from None


class NoteIn(BaseModel):
    note: str | None = None


@router.post("/escalations/{escalation_id}/{action}")
def escalation_action(
    escalation_id: RowId,
    action: Literal["acknowledge", "book", "close"],
    rt: RuntimeDep,
    tok: TokenDep,
    body: NoteIn | None = None,
) -> dict[str, Any]:
    """Acknowledge, mark booked, or close an escalation (with a note)."""
    try:
        note = storable(body.note) if body and body.note else None
        e = svc.change_escalation(rt, escalation_id, action, actor(tok), note)
    except svc.NotFound:
        raise HTTPException(404, "no such escalation") from None
    except svc.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    return _escalation(e)
