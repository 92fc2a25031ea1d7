"""The overview page: figures and charts a person can read at a glance."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from followup.services.overview import overview
from followup.services.visits import visits_this_week
from followup.web.dashboard import charts
from followup.web.dashboard.common import render
from followup.web.deps import RuntimeDep
from followup.web.staffauth import StaffDep

router = APIRouter()


@router.get("/dashboard/overview", response_class=HTMLResponse)
def overview_page(request: Request, rt: RuntimeDep, staff: StaffDep) -> Response:
    """Enrolment, escalations by tier per week, response rate, delivery failures, silence, and trends."""
    o = overview(rt)
    label = [w.strftime("%d %b") for w in o.weeks]
    escalations = charts.stacked(
        "Escalations per week, by tier",
        [(label[i], o.escalations_by_week[w]) for i, w in enumerate(o.weeks)],
        [("routine", "routine"), ("urgent", "urgent"), ("emergency", "emergency")],
    )
    response = charts.percent(
        "Check-ins answered within 3 days",
        [(label[i], *o.response_by_week[w]) for i, w in enumerate(o.weeks)],
    )
    failures = charts.stacked(
        "Delivery failures per week",
        [(label[i], {"failures": o.failures_by_week[w]}) for i, w in enumerate(o.weeks)],
        [("failures", "failed or undelivered")],
    )
    trend = charts.stacked(
        "Check-in answers per week: better, same, worse",
        [(label[i], o.trend_by_week[w]) for i, w in enumerate(o.weeks)],
        [("better", "better"), ("same", "same"), ("worse", "worse")],
    )
    return render(
        request,
        rt,
        staff,
        "overview.html",
        o=o,
        visits_week=visits_this_week(rt),
        week_labels=label,
        charts=[escalations, response, failures, trend],
    )
