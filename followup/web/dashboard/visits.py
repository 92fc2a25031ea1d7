"""Upcoming visits: the booked appointments, day by day, a page at a time, for the front desk and the clinicians."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from followup.services.overview import staff_names
from followup.services.visits import PAGE, upcoming_visits
from followup.web.dashboard.common import render
from followup.web.deps import RuntimeDep
from followup.web.staffauth import StaffDep

router = APIRouter()


@router.get("/dashboard/visits", response_class=HTMLResponse)
def visits_page(
    request: Request,
    rt: RuntimeDep,
    staff: StaffDep,
    days: int = Query(28, ge=1, le=120),
    after: int | None = Query(None, ge=1),
    before: int | None = Query(None, ge=1),
) -> Response:
    """Booked visits from today on, grouped by day, each with the patient's number and its escalation; a page of
    PAGE visits at a time, with links to the earlier and later ones."""
    page = upcoming_visits(rt, days, after=after, before=before)
    return render(
        request, rt, staff, "visits.html", page=page, days=page.days, horizon=days, names=staff_names(rt), per=PAGE
    )
