"""Admin pages: the audit log (who did what, when) and the staff accounts with their lifecycle actions (disable,
enable, set a password, end sessions, reset the second factor, clear failure counts). Clinicians get 403."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from followup.runtime import Runtime
from followup.services import staff as staff_svc
from followup.services import totp
from followup.services.overview import audit_page, staff_names
from followup.services.passwords import Busy
from followup.services.staff import NoSuchStaff, Staff, StaffError
from followup.web.dashboard.common import render
from followup.web.deps import MAX_ID, RowId, RuntimeDep
from followup.web.staffauth import AdminDep, csrf_ok

router = APIRouter()
PAGE = 200


@router.get("/dashboard/audit", response_class=HTMLResponse)
def audit(
    request: Request,
    rt: RuntimeDep,
    staff: AdminDep,
    page: int = Query(1, ge=1, le=100_000),
    actor: str = Query("", max_length=60),
    before: int | None = Query(None, ge=1, le=MAX_ID),
) -> Response:
    """Every recorded action, newest first; filter by actor ("staff:3", "system"). Older pages go by `before`
    (keyset); `page` only numbers them."""
    found = audit_page(rt, PAGE, before, actor or None)
    return render(
        request,
        rt,
        staff,
        "audit.html",
        rows=found.rows,
        names=staff_names(rt),
        page=page if before else 1,
        actor=actor,
        next_before=found.next_before,
    )


def _staff_page(request: Request, rt: Runtime, staff: Staff, status: int = 200, error: str = "") -> HTMLResponse:
    return render(
        request,
        rt,
        staff,
        "staff.html",
        status,
        error=error,
        accounts=staff_svc.list_staff(rt),
        sessions=staff_svc.open_session_counts(rt),
    )


@router.get("/dashboard/staff", response_class=HTMLResponse)
def staff_list(request: Request, rt: RuntimeDep, staff: AdminDep) -> Response:
    """Staff accounts: role, state, second factor, open sessions, and what an admin may do to each."""
    return _staff_page(request, rt, staff)


ACTIONS = {
    "disable": staff_svc.disable,
    "enable": staff_svc.enable,
    "revoke": staff_svc.revoke_sessions,
    "totp_reset": totp.reset,
    "unlock": staff_svc.unlock,
}


@router.post("/dashboard/staff/{staff_id}", response_class=HTMLResponse)
async def staff_action(request: Request, staff_id: RowId, rt: RuntimeDep, staff: AdminDep) -> Response:
    """disable, enable, revoke (end every session), totp_reset, unlock, or password (new_password); audited."""
    form = await request.form()
    action = str(form.get("action") or "")
    if not csrf_ok(rt, request, form.get("csrf_token")):
        return _staff_page(request, rt, staff, 403, "This page was open too long. Please try again.")
    try:
        if action == "password":
            new = str(form.get("new_password") or "")
            await run_in_threadpool(staff_svc.set_password, rt, staff_id, new, staff.actor)
        elif action in ACTIONS:
            await run_in_threadpool(ACTIONS[action], rt, staff_id, staff.actor)
        else:
            return _staff_page(request, rt, staff, 422, "Unknown action.")
    except NoSuchStaff:
        raise HTTPException(404, "no such staff account") from None
    except StaffError as exc:
        return _staff_page(request, rt, staff, 422, str(exc))
    except Busy:
        page = _staff_page(request, rt, staff, 503, "The server is busy. Please try again in a moment.")
        page.headers["Retry-After"] = "1"
        return page
    return RedirectResponse(f"/dashboard/staff?done=staff_{action}", status_code=303)
