"""The signed-in user's own account: change the password, set up or turn off the second factor (TOTP).

It is the one page an admin in production without a second factor may open (web/staffauth.py sends them here).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from followup.runtime import Runtime
from followup.services import staff as staff_svc
from followup.services import totp
from followup.services.signin import Busy, TooManyAttempts, WrongCode, WrongCredentials
from followup.services.staff import Staff, StaffError
from followup.web.dashboard.common import render
from followup.web.deps import RuntimeDep
from followup.web.limits import client_key
from followup.web.staffauth import StaffDep, csrf_ok

router = APIRouter()
PAGE = "/dashboard/account"


def _account_page(
    request: Request, rt: Runtime, staff: Staff, status: int = 200, error: str = "", **context: Any
) -> HTMLResponse:
    return render(
        request,
        rt,
        staff,
        "account.html",
        status,
        error=error,
        must_enrol=not staff.totp and totp.required(rt.settings, staff.role),
        may_remove=not totp.required(rt.settings, staff.role),
        **context,
    )


@router.get(PAGE, response_class=HTMLResponse)
def account_page(request: Request, rt: RuntimeDep, staff: StaffDep) -> Response:
    """Your password and second factor."""
    return _account_page(request, rt, staff)


@router.post(PAGE, response_class=HTMLResponse)
async def account_action(request: Request, rt: RuntimeDep, staff: StaffDep) -> Response:
    """password (current, new, again), totp_begin, totp_confirm (code) or totp_remove (code)."""
    form = await request.form()
    action = str(form.get("action") or "")
    if not csrf_ok(rt, request, form.get("csrf_token")):
        return _account_page(request, rt, staff, 403, "This page was open too long. Please try again.")
    address = client_key(request.scope)
    code = str(form.get("code") or "")
    try:
        if action == "password":
            new = str(form.get("new_password") or "")
            if new != str(form.get("new_password_again") or ""):
                raise StaffError("new_password: the two entries differ")
            current = str(form.get("current_password") or "")
            await run_in_threadpool(staff_svc.change_own_password, rt, staff, current, new, address)
        elif action == "totp_begin":
            enrolment = await run_in_threadpool(totp.begin, rt, staff)
            return _account_page(request, rt, staff, enrolment=enrolment)  # the one time the secret is shown
        elif action == "totp_confirm":
            await run_in_threadpool(totp.confirm, rt, staff, code, address)
        elif action == "totp_remove":
            await run_in_threadpool(totp.remove_own, rt, staff, code, address)
        else:
            return _account_page(request, rt, staff, 422, "Unknown action.")
    except StaffError as exc:
        return _account_page(request, rt, staff, 422, str(exc))
    except WrongCredentials:
        return _account_page(request, rt, staff, 401, "Your current password is wrong.")
    except WrongCode:
        return _account_page(request, rt, staff, 401, "Wrong or expired code. Start again if it keeps failing.")
    except TooManyAttempts as exc:
        secs = max(1, math.ceil(exc.retry_after.total_seconds()))
        page = _account_page(request, rt, staff, 429, f"Too many wrong attempts. Please wait {secs} seconds.")
        page.headers["Retry-After"] = str(secs)
        return page
    except Busy:
        page = _account_page(request, rt, staff, 503, "The server is busy. Please try again in a moment.")
        page.headers["Retry-After"] = "1"
        return page
    return RedirectResponse(f"{PAGE}?done={action}", status_code=303)
