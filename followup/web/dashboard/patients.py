"""Patients: search and status filters, and one patient's page (timeline, schedule, trend, actions)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from followup.core.paging import total_text
from followup.services import audit, roster
from followup.services import patients as patient_svc
from followup.services.overview import patient_trend
from followup.web.dashboard.common import render
from followup.web.deps import MAX_ID, RowId, RuntimeDep
from followup.web.staffauth import StaffDep, csrf_ok

router = APIRouter()
PAGE = 50
STATUS_ACTIONS = ("pause", "resume", "unenroll")


@router.get("/dashboard/patients", response_class=HTMLResponse)
def patient_list(
    request: Request,
    rt: RuntimeDep,
    staff: StaffDep,
    q: str = Query("", max_length=100),
    status: str = Query("", max_length=20),
    page: int = Query(1, ge=1, le=10_000),
    before: int | None = Query(None, ge=1, le=MAX_ID),
) -> Response:
    """Search by name, number or email; filter by status (including unreachable and not responding). Pages go
    by `before` (keyset); `page` only numbers them."""
    status = status if status in roster.FILTERS else ""
    total, found = roster.search(rt, q, status or None, PAGE, before)
    return render(
        request,
        rt,
        staff,
        "patients.html",
        patients=found.rows,
        total=total_text(total, roster.count_cap(status or None)),
        next_before=found.next_before,
        q=q,
        status=status,
        filters=roster.FILTERS,
        page=page if before else 1,
    )


def _patient_page(
    request: Request, rt: Any, staff: Any, patient_id: int, status: int = 200, error: str = ""
) -> Response:
    try:
        d = patient_svc.detail(rt, patient_id)
    except patient_svc.NotFound:
        raise HTTPException(404, "no such patient") from None
    return render(
        request,
        rt,
        staff,
        "patient.html",
        status,
        p=d["patient"],
        timeline=d["timeline"],
        schedule=d["schedule"],
        escalations=d["escalations"],
        triages=d["triages"],
        consents=d["consents"],
        held_by=d["held_by"],
        trend=patient_trend(rt, patient_id),
        error=error,
    )


@router.get("/dashboard/patients/{patient_id}", response_class=HTMLResponse)
def patient_page(request: Request, patient_id: RowId, rt: RuntimeDep, staff: StaffDep) -> Response:
    """Every message in and out with its delivery state, what is scheduled next, and the actions."""
    response = _patient_page(request, rt, staff, patient_id)
    audit.note(rt, staff.actor, "patient.viewed", f"patient:{patient_id}")
    return response


@router.post("/dashboard/patients/{patient_id}", response_class=HTMLResponse)
async def patient_action(request: Request, patient_id: RowId, rt: RuntimeDep, staff: StaffDep) -> Response:
    """Pause, resume, unenroll, or change the channel; a refused action changes nothing and says why."""
    form = await request.form()
    action = str(form.get("action") or "")
    if not csrf_ok(rt, request, form.get("csrf_token")):
        return _patient_page(request, rt, staff, patient_id, 403, "This page was open too long. Please try again.")
    try:
        if action in STATUS_ACTIONS:
            await run_in_threadpool(patient_svc.change_status, rt, patient_id, action, staff.actor)
        elif action == "channel":
            channel = str(form.get("channel") or "")
            await run_in_threadpool(roster.change_channel, rt, patient_id, channel, staff.actor)
        else:
            return _patient_page(request, rt, staff, patient_id, 422, "Unknown action.")
    except (patient_svc.NotFound, LookupError):
        raise HTTPException(404, "no such patient") from None
    except (patient_svc.Conflict, roster.RosterError) as exc:
        return _patient_page(request, rt, staff, patient_id, 409, str(exc).capitalize() + ".")
    return RedirectResponse(f"/dashboard/patients/{patient_id}?done={action}", status_code=303)
