"""Staff sessions: the session cookie, the CSRF token of staff forms, and the dependencies that guard staff pages.

The session cookie (HttpOnly, SameSite=Lax so a link from an alert email opens the dashboard, Secure over https)
holds a random token that the database knows by its hash. Staff forms carry a CSRF token: a signed hash of the
session token (the token itself never appears in a page). Without a session, pages under /dashboard redirect to
/login and the JSON routes under /dashboard/api answer 401. An admin in production without a second factor is
sent to set one up (/dashboard/account) before any other page opens. Signing in is in web/signin.py.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request

from followup.runtime import Runtime
from followup.services.staff import Staff, session_staff
from followup.services.totp import required as second_factor_required
from followup.web.csrf import Csrf
from followup.web.deps import RuntimeDep

SESSION_COOKIE = "followup_staff"
API_PREFIX = "/dashboard/api/"
ENROL_PAGE = "/dashboard/account"  # the one page open to an admin who must still set up a second factor


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
    api = request.url.path.startswith(API_PREFIX)
    if staff is None:
        if api:
            raise HTTPException(401, "sign in required", headers={"WWW-Authenticate": 'Cookie realm="dashboard"'})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(303, "sign in required", headers={"Location": f"/login?next={quote(target, safe='')}"})
    if not staff.totp and second_factor_required(rt.settings, staff.role) and request.url.path != ENROL_PAGE:
        if api:
            raise HTTPException(403, "set up a second factor at /dashboard/account first")
        raise HTTPException(303, "second factor required", headers={"Location": ENROL_PAGE})
    return staff


StaffDep = Annotated[Staff, Depends(current_staff)]


def require_admin(staff: StaffDep) -> Staff:
    if not staff.is_admin:
        raise HTTPException(403, "this page is for admins")
    return staff


AdminDep = Annotated[Staff, Depends(require_admin)]
