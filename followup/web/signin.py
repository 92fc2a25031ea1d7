"""Staff sign-in pages: the password, the second-factor code when the account has one, and signing out.

Answers never tell whether an email is a staff account: a wrong password, an unknown or a disabled account all get
the same 401 page, and the same waits (services/signin.py). Too many recent failures get 429 with Retry-After
before any password is checked; with every password-hash slot busy, 503 with Retry-After at once.

Three cookies besides the CSRF one:
- `followup_staff`, the session (web/staffauth.py);
- `followup_2fa`, for five minutes between a right password and its code: the account id, signed;
- `followup_device`, given to a browser once it has signed in: a random id bound (by a keyed hash) to the email.
  With it, failures on that account from this browser count apart from everyone else's, so no one else's
  failures can keep the owner out of their own browser (services/throttle.py, "device").
"""

from __future__ import annotations

import hmac
import html
import math
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.concurrency import run_in_threadpool

from followup.runtime import Runtime
from followup.services.signin import (
    Attempt,
    Busy,
    TooManyAttempts,
    WrongCode,
    WrongCredentials,
    check_code,
    check_password,
    normal_email,
)
from followup.services.staff import SESSION_FOR, end_session, session_staff, start_session
from followup.web.csrf import COOKIE, MAX_AGE, Csrf
from followup.web.deps import RuntimeDep
from followup.web.limits import ASGIApp, Receive, Scope, Send, client_key
from followup.web.staffauth import SESSION_COOKIE, secure

PENDING_COOKIE = "followup_2fa"
PENDING_FOR = 300
DEVICE_COOKIE = "followup_device"
DEVICE_FOR = 180 * 86400
WRONG = "Wrong email or password."
BUSY_RETRY = 1
router = APIRouter(tags=["staff"], include_in_schema=False)
pages = Jinja2Templates(directory=str(Path(__file__).parent / "pages"))


def safe_next(value: str | None) -> str:
    """Only a dashboard path of this site (no "//evil.example", no scheme)."""
    if value and value.startswith("/dashboard") and "//" not in value and "\\" not in value:
        return value
    return "/dashboard"


def _sign(rt: Runtime, purpose: str, **value: Any) -> str:
    """A signed cookie value that carries when it was made (by the runtime's clock, as every expiry here)."""
    return URLSafeSerializer(rt.links.key, salt=f"staff-{purpose}").dumps({**value, "at": rt.clock.now().timestamp()})


def _unsign(rt: Runtime, purpose: str, raw: str | None, max_age: int) -> dict[str, Any] | None:
    """The value of a cookie made by `_sign` for `purpose`, if genuine and younger than `max_age` seconds."""
    if not raw or len(raw) > 300:
        return None
    try:
        value = URLSafeSerializer(rt.links.key, salt=f"staff-{purpose}").loads(raw)
    except BadSignature:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("at"), float | int):
        return None
    age = rt.clock.now().timestamp() - value["at"]
    return value if 0 <= age <= max_age else None


def _email_tag(rt: Runtime, email: str) -> str:
    return rt.links.keyed_hash(f"device:{normal_email(email)}", 24)


def device_of(rt: Runtime, request: Request, email: str) -> str | None:
    """This browser's device id for `email`, if it signed in to that account before."""
    value = _unsign(rt, "device", request.cookies.get(DEVICE_COOKIE), DEVICE_FOR)
    if value is None or not hmac.compare_digest(str(value.get("e")), _email_tag(rt, email)):
        return None
    device = value.get("d")
    return device if isinstance(device, str) else None


def _wait_text(wait: timedelta) -> str:
    secs = max(1, math.ceil(wait.total_seconds()))
    if secs < 90:
        return f"{secs} seconds"
    return f"{math.ceil(secs / 60)} minutes"


def _page(
    request: Request,
    rt: Runtime,
    template: str,
    status: int = 200,
    error: str | None = None,
    email: str = "",
    nxt: str = "",
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    cookie = request.cookies.get(COOKIE) or Csrf.new_cookie()
    response = pages.TemplateResponse(
        request,
        template,
        {
            "clinic": rt.settings.clinic,
            "error": error,
            "email": email,
            "next": safe_next(nxt),
            "csrf_token": Csrf(rt.links.key).token(cookie),
        },
        status_code=status,
        headers=headers,
    )
    response.set_cookie(COOKIE, cookie, max_age=MAX_AGE, httponly=True, samesite="strict", secure=secure(rt, request))
    response.headers["Cache-Control"] = "no-store"
    return response


def _refused(request: Request, rt: Runtime, exc: Exception, template: str, email: str, nxt: str) -> HTMLResponse:
    """The page for a refused attempt: the same for every account, known or not."""
    if isinstance(exc, TooManyAttempts):
        wait = exc.retry_after
        text = f"Too many sign-in attempts. Please wait {_wait_text(wait)} and try again."
        retry = {"Retry-After": str(max(1, math.ceil(wait.total_seconds())))}
        return _page(request, rt, template, 429, text, email, nxt, retry)
    if isinstance(exc, Busy):
        text = "Many people are signing in right now. Please try again in a moment."
        return _page(request, rt, template, 503, text, email, nxt, {"Retry-After": str(BUSY_RETRY)})
    if isinstance(exc, WrongCode):
        return _page(request, rt, template, 401, "Wrong or expired code. Enter the code your app shows now.", "", nxt)
    return _page(request, rt, template, 401, WRONG, email, nxt)


class BusyGate:
    """ASGI middleware: while every password-hash slot is held, a sign-in is answered 503 (Retry-After) before the
    app reads its form, routes it or touches the database: a flood of attempts costs next to nothing each, and
    /healthz and the webhooks keep their share of the event loop (bench/login_flood.py). The route still maps a
    slot lost to a race (services raise Busy) to the same answer."""

    def __init__(self, app: ASGIApp, rt: Runtime) -> None:
        self.app, self.rt = app, rt
        clinic = html.escape(rt.settings.clinic.name)
        self.body = (
            f"<!doctype html><meta charset=utf-8><title>Staff sign-in: {clinic}</title>"
            "<p>Many people are signing in right now. Please try again in a moment.</p>"
            '<p><a href="/login">Back to sign-in</a></p>'
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        login = scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/login"
        if not login or not self.rt.password_slots.full:
            await self.app(scope, receive, send)
            return
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(self.body)).encode()),
            (b"retry-after", str(BUSY_RETRY).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def _signed_in(request: Request, rt: Runtime, user: Any, nxt: str, second_factor: bool) -> Response:
    token = start_session(rt, user, second_factor)
    response = RedirectResponse(safe_next(nxt), status_code=303)
    https = secure(rt, request)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_FOR.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=https,
        path="/",
    )
    device = _sign(rt, "device", e=_email_tag(rt, user.email), d=secrets.token_urlsafe(16))
    response.set_cookie(
        DEVICE_COOKIE, device, max_age=DEVICE_FOR, httponly=True, samesite="strict", secure=https, path="/login"
    )
    response.delete_cookie(PENDING_COOKIE, path="/login", httponly=True, samesite="strict", secure=https)
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, rt: RuntimeDep, next: str = "") -> Response:
    """The staff sign-in page."""
    if session_staff(rt, request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _page(request, rt, "login.html", nxt=next)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, rt: RuntimeDep) -> Response:
    """Check the password; then ask for the code if the account has a second factor, else start a session."""
    form = await request.form()
    email = str(form.get("email") or "")[:320]
    password = str(form.get("password") or "")
    nxt = str(form.get("next") or "")
    if not Csrf(rt.links.key).valid(request.cookies.get(COOKIE), str(form.get("csrf_token") or "")):
        return _page(request, rt, "login.html", 403, "This form expired. Please sign in again.", email, nxt)
    if not email or not password:
        return _page(request, rt, "login.html", 422, "Enter your email and password.", email, nxt)
    attempt = Attempt(email, password, client_key(request.scope), device_of(rt, request, email))
    try:
        user = await run_in_threadpool(check_password, rt, attempt)
    except (WrongCredentials, TooManyAttempts, Busy) as exc:
        return _refused(request, rt, exc, "login.html", email, nxt)
    if user.totp_enabled_at is None:
        return await run_in_threadpool(_signed_in, request, rt, user, nxt, False)
    response = _page(request, rt, "login_code.html", nxt=nxt)
    pending = _sign(rt, "second-factor", u=user.id)
    response.set_cookie(
        PENDING_COOKIE,
        pending,
        max_age=PENDING_FOR,
        httponly=True,
        samesite="strict",
        secure=secure(rt, request),
        path="/login",
    )
    return response


@router.post("/login/code", response_class=HTMLResponse)
async def login_code(request: Request, rt: RuntimeDep) -> Response:
    """The second-factor code, after a right password (within five minutes of it)."""
    form = await request.form()
    nxt = str(form.get("next") or "")
    code = str(form.get("code") or "")
    if not Csrf(rt.links.key).valid(request.cookies.get(COOKIE), str(form.get("csrf_token") or "")):
        return _page(request, rt, "login.html", 403, "This form expired. Please sign in again.", nxt=nxt)
    pending = _unsign(rt, "second-factor", request.cookies.get(PENDING_COOKIE), PENDING_FOR)
    staff_id = pending.get("u") if pending else None
    if not isinstance(staff_id, int):
        return _page(request, rt, "login.html", 403, "This sign-in expired. Please sign in again.", nxt=nxt)
    try:
        user = await run_in_threadpool(check_code, rt, staff_id, code, client_key(request.scope))
    except (WrongCode, TooManyAttempts) as exc:
        return _refused(request, rt, exc, "login_code.html", "", nxt)
    return await run_in_threadpool(_signed_in, request, rt, user, nxt, True)


@router.post("/logout")
async def logout(request: Request, rt: RuntimeDep) -> Response:
    """End the session (in the database, not only in the browser). The form carries a CSRF token like every
    staff form, but an expired one still signs out: ending a session can only ever make things safer."""
    await request.form()
    await run_in_threadpool(end_session, rt, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure(rt, request))
    return response
