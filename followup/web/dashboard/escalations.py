"""The escalation queue (most serious first, each with its acknowledgement clock) and the escalation page."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from followup.core.attention import ACKNOWLEDGED, OPEN, OVERDUE, band
from followup.core.storable import storable
from followup.services import audit
from followup.services import patients as patient_svc
from followup.services.overview import QUEUE_FILTERS, case_file, escalation_queue, queue_counts, staff_names
from followup.web.dashboard.common import clock_text, render
from followup.web.dashboard.highlight import highlight
from followup.web.deps import RowId, RuntimeDep
from followup.web.staffauth import StaffDep, csrf_ok

router = APIRouter()
ACTIONS = {"acknowledge", "book", "close"}
MAX_NOTE = 2000


LIVE_SECONDS = 30  # how often an open queue page fetches its rows again (static/live-queue.js)


BANDS = {OVERDUE: "Overdue", OPEN: "Open", ACKNOWLEDGED: "Acknowledged"}


def _queue_context(rt: Any, status: str) -> dict[str, Any]:
    status = status if status in QUEUE_FILTERS else "active"
    items = escalation_queue(rt, status)
    counts = queue_counts(items if status in ("active", "open") else escalation_queue(rt, "open"))
    groups = [
        (BANDS.get(b, status.capitalize()), list(rows))
        for b, rows in groupby(items, key=lambda i: band(i.escalation.status, i.clock.overdue))
    ]
    return {
        "items": items,
        "groups": groups,
        "status": status,
        "filters": list(QUEUE_FILTERS),
        "counts": counts,
        "every": LIVE_SECONDS,
    }


@router.get("/dashboard", response_class=HTMLResponse)
def queue_page(request: Request, rt: RuntimeDep, staff: StaffDep, status: str = "active") -> Response:
    """Overdue first, then open escalations by tier and age, then acknowledged ones; the rows and the count in the
    title refresh by themselves (static/live-queue.js; a meta refresh without JavaScript)."""
    return render(request, rt, staff, "queue.html", **_queue_context(rt, status))


@router.get("/dashboard/api/queue/rows", response_class=HTMLResponse)
def queue_rows(request: Request, rt: RuntimeDep, staff: StaffDep, status: str = "active") -> Response:
    """The queue's rows and title count alone, as HTML, for the open page to swap in; 401 without a session."""
    return render(request, rt, staff, "_queue_live.html", **_queue_context(rt, status))


@router.get("/dashboard/api/queue")
def queue_json(rt: RuntimeDep, staff: StaffDep, status: str = "active") -> list[dict[str, Any]]:
    """The queue as JSON (for a wall screen or another tool); 401 without a staff session."""
    now = rt.clock.now()
    out = []
    for item in escalation_queue(rt, status if status in QUEUE_FILTERS else "active"):
        e = item.escalation
        out.append(
            {
                "id": e.id,
                "tier": e.tier,
                "status": e.status,
                "patient_id": e.patient_id,
                "created_at": e.created_at,
                "ack_due_at": item.clock.due_at,
                "overdue": item.clock.overdue,
                "clock": clock_text(item.clock, now, e)[0],
                "criteria": list(item.criteria),
                "realert_rounds": item.clock.rounds,
                "appointment_at": item.appointment_at,
            }
        )
    return out


def _case_page(
    request: Request, rt: Any, staff: Any, escalation_id: int, status: int = 200, error: str = ""
) -> Response:
    try:
        case = case_file(rt, escalation_id)
    except LookupError:
        raise HTTPException(404, "no such escalation") from None
    replies = [
        (
            r,
            highlight(
                r.body, (r.verdict or {}).get("findings", []), (r.verdict or {}).get("suppressed", []), case.labels
            ),
        )
        for r in case.replies
    ]
    assert case.patient.id is not None
    detail = patient_svc.detail(rt, case.patient.id)
    return render(
        request,
        rt,
        staff,
        "escalation.html",
        status,
        case=case,
        replies=replies,
        timeline=detail["timeline"],
        error=error,
        names=staff_names(rt),
        external=bool(rt.settings.booking.external_url),
    )


@router.get("/dashboard/escalations/{escalation_id}", response_class=HTMLResponse)
def escalation_page(request: Request, escalation_id: RowId, rt: RuntimeDep, staff: StaffDep) -> Response:
    """One escalation: the reply with its evidence marked, criteria, suppressed mentions, conversation, triage."""
    response = _case_page(request, rt, staff, escalation_id)
    audit.note(rt, staff.actor, "escalation.viewed", f"escalation:{escalation_id}")
    return response


@router.post("/dashboard/escalations/{escalation_id}", response_class=HTMLResponse)
async def escalation_action(request: Request, escalation_id: RowId, rt: RuntimeDep, staff: StaffDep) -> Response:
    """Acknowledge, mark booked, or close with a note; a refused action changes nothing and says why."""
    form = await request.form()
    action = str(form.get("action") or "")
    note = storable(str(form.get("note") or "")).strip()
    if not csrf_ok(rt, request, form.get("csrf_token")):
        return _case_page(request, rt, staff, escalation_id, 403, "This page was open too long. Please try again.")
    if action not in ACTIONS:
        return _case_page(request, rt, staff, escalation_id, 422, "Unknown action.")
    if action == "close" and not note:
        return _case_page(request, rt, staff, escalation_id, 422, "Write a short note to close the escalation.")
    if len(note) > MAX_NOTE:
        return _case_page(request, rt, staff, escalation_id, 422, f"The note is limited to {MAX_NOTE} characters.")
    try:
        await run_in_threadpool(patient_svc.change_escalation, rt, escalation_id, action, staff.actor, note or None)
    except patient_svc.NotFound:
        raise HTTPException(404, "no such escalation") from None
    except patient_svc.Conflict as exc:
        return _case_page(request, rt, staff, escalation_id, 409, str(exc).capitalize() + ".")
    return RedirectResponse(f"/dashboard/escalations/{escalation_id}?done={action}", status_code=303)
