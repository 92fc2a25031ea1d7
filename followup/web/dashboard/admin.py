"""Admin pages: the audit log (who did what, when) and the staff list. Clinicians get 403."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from followup.services.overview import audit_page, staff_names
from followup.services.staff import list_staff
from followup.web.dashboard.common import render
from followup.web.deps import RuntimeDep
from followup.web.staffauth import AdminDep

router = APIRouter()
PAGE = 200


@router.get("/dashboard/audit", response_class=HTMLResponse)
def audit(
    request: Request,
    rt: RuntimeDep,
    staff: AdminDep,
    page: int = Query(1, ge=1, le=100_000),
    actor: str = Query("", max_length=60),
) -> Response:
    """Every recorded action, newest first; filter by actor ("staff:3", "system")."""
    rows = audit_page(rt, PAGE, (page - 1) * PAGE, actor or None)
    return render(
        request,
        rt,
        staff,
        "audit.html",
        rows=rows,
        names=staff_names(rt),
        page=page,
        actor=actor,
        more=len(rows) == PAGE,
    )


@router.get("/dashboard/staff", response_class=HTMLResponse)
def staff_list(request: Request, rt: RuntimeDep, staff: AdminDep) -> Response:
    """Staff accounts, their role and whether they are locked out (accounts are added with `followup staff add`)."""
    return render(request, rt, staff, "staff.html", accounts=list_staff(rt))
