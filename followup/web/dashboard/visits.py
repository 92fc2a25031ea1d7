"""Upcoming visits: the booked appointments, day by day, for the front desk and the clinicians."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from followup.services.overview import staff_names
from followup.services.visits import upcoming_visits
from followup.web.dashboard.common import render
from followup.web.deps import RuntimeDep
from followup.web.staffauth import StaffDep

router = APIRouter()


@router.get("/dashboard/visits", response_class=HTMLResponse)
def visits_page(request: Request, rt: RuntimeDep, staff: StaffDep, days: int = Query(28, ge=1, le=120)) -> Response:
    """Booked visits from today on, grouped by day, each with the patient's number and its escalation."""
    return render(
        request, rt, staff, "visits.html", days=upcoming_visits(rt, days), horizon=days, names=staff_names(rt)
    )
