"""Staff sign-in: the login and logout pages, the session cookie, and the dependencies that guard staff pages.

The session cookie (HttpOnly, SameSite=Lax so a link from an alert email opens the dashboard, Secure over https)
holds a random token that the database knows by its hash. Staff forms carry a CSRF token: a signed hash of the
session token (the token itself never appears in a page). Without a session, pages under /dashboard redirect to
/login and the JSON routes under /dashboard/api answer 401.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from followup.runtime import Runtime
from followup.services.staff import SESSION_FOR, LoginRefused, Staff, authenticate, end_session, session_staff
from followup.services.staff import start_session as open_session
from followup.web.csrf import COOKIE, MAX_AGE, Csrf
from followup.web.deps import RuntimeDep

SESSION_COOKIE = "followup_staff"
API_PREFIX = "/dashboard/api/"
router = APIRouter(tags=["staff"], include_in_schema=False)
pages = Jinja2Templates(directory=str(Path(__file__).parent / "pages"))


def secure(rt: Runtime, request: Request) -> bool:
    return rt.settings.server.public_url.startswith("https://") or request.url.scheme == "https"


def _session_key(request: Request) -> str:
    token = request.cookies.get(SESSION_COOKIE, "")
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


def csrf_token(rt: Runtime, request: Request) -> str:
    return Csrf(rt.links.key).token(_session_key(request))


def csrf_ok(rt: Runtime, request: Request, form_token: Any) -> bool:
    key = _session_key(request)
    return bool(key) and isinstance(form_token, str) and Csrf(rt.links.key).valid(key, form_token)


def current_staff(request: Request, rt: RuntimeDep) -> Staff:
    staff = session_staff(rt, request.cookies.get(SESSION_COOKIE))
    if staff is not None:
        return staff
    if request.url.path.startswith(API_PREFIX):
        raise HTTPException(401, "sign in required", headers={"WWW-Authenticate": 'Cookie realm="dashboard"'})
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise HTTPException(303, "sign in required", headers={"Location": f"/login?next={quote(target, safe='')}"})


StaffDep = Annotated[Staff, Depends(current_staff)]


def require_admin(staff: StaffDep) -> Staff:
    if not staff.is_admin:
        raise HTTPException(403, "this page is for admins")
    return staff


AdminDep = Annotated[Staff, Depends(require_admin)]


def safe_next(value: str | None) -> str:
    """Only a dashboard path of this site (no "//evil.example", no scheme)."""
    if value and value.startswith("/dashboard") and "//" not in value and "\\" not in value:
        return value
    return "/dashboard"


def _login_page(
    request: Request, rt: Runtime, status: int = 200, error: str | None = None, email: str = "", nxt: str = ""
) -> HTMLResponse:
    cookie = request.cookies.get(COOKIE) or Csrf.new_cookie()
    response = pages.TemplateResponse(
        request,
        "login.html",
        {
            "clinic": rt.settings.clinic,
            "error": error,
            "email": email,
            "next": safe_next(nxt),
            "csrf_token": Csrf(rt.links.key).token(cookie),
        },
        status_code=status,
    )
    response.set_cookie(COOKIE, cookie, max_age=MAX_AGE, httponly=True, samesite="strict", secure=secure(rt, request))
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, rt: RuntimeDep, next: str = "") -> Response:
    """The staff sign-in page."""
    if session_staff(rt, request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, rt, nxt=next)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, rt: RuntimeDep) -> Response:
    """Check the password; on success start a session and go to the page asked for."""
    form = await request.form()
    email = str(form.get("email") or "")[:320]
    password = str(form.get("password") or "")
    nxt = str(form.get("next") or "")
    if not Csrf(rt.links.key).valid(request.cookies.get(COOKIE), str(form.get("csrf_token") or "")):
        return _login_page(request, rt, 403, "This form expired. Please sign in again.", email, nxt)
    if not email or not password:
        return _login_page(request, rt, 422, "Enter your email and password.", email, nxt)
    try:
        user = await run_in_threadpool(authenticate, rt, email, password)
    except LoginRefused as exc:
        return _login_page(request, rt, 401, str(exc), email, nxt)
    token = await run_in_threadpool(open_session, rt, user)
    response = RedirectResponse(safe_next(nxt), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_FOR.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=secure(rt, request),
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request, rt: RuntimeDep) -> Response:
    """End the session (in the database, not only in the browser). The form carries a CSRF token like every
    staff form, but an expired one still signs out: ending a session can only ever make things safer."""
    await request.form()
    await run_in_threadpool(end_session, rt, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure(rt, request))
    return response
