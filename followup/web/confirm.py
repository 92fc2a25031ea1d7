"""The email confirmation link of the double opt-in (services/confirmation.py): `/confirm/<token>`.

GET only shows a button (mail scanners and link previews open links; opening must change nothing); POST confirms.
The token is the secret, so the form needs no CSRF token: a forged post would need the link itself.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from followup.runtime import Runtime
from followup.services import confirmation
from followup.web.booking import HEADERS
from followup.web.deps import RuntimeDep
from followup.web.patientpages import common, page_language, pages

router = APIRouter(tags=["intake"], include_in_schema=False)  # a patient page, like booking links
MAX_TOKEN = 100


def _page(request: Request, rt: Runtime, state: str, token: str = "", status: int = 200) -> HTMLResponse:
    lang = page_language(request, rt, request.query_params.get("lang"))
    response = pages.TemplateResponse(
        request, "confirm.html", {**common(rt, lang), "state": state, "token": token}, status_code=status
    )
    response.headers.update(HEADERS)  # no referrer (the token), no framing, no script
    return response


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str, rt: RuntimeDep) -> HTMLResponse:
    """The confirmation page: one button (a link unknown, used or expired: 404 and one page for all three)."""
    if len(token) > MAX_TOKEN or not confirmation.link_open(rt, token):
        return _page(request, rt, "expired", status=404)
    return _page(request, rt, "ask", token)


@router.post("/confirm/{token}", response_class=HTMLResponse)
async def confirm_submit(request: Request, token: str, rt: RuntimeDep) -> HTMLResponse:
    """Confirm the email address the link was sent to: once, before it expires."""
    ok = await run_in_threadpool(confirmation.confirm_by_link, rt, token)
    return _page(request, rt, "done" if ok else "expired", status=200 if ok else 404)
