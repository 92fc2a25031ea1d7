"""Admin pages for operations: the outbound webhook delivery log (send a failed one again) and the workers with
their last dispatcher pass. Clinicians get 403."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from followup.services import ops, webhooks_out
from followup.web.dashboard.common import render
from followup.web.deps import RowId, RuntimeDep
from followup.web.staffauth import AdminDep, csrf_ok

router = APIRouter()
PAGE = 100


@router.get("/dashboard/webhooks", response_class=HTMLResponse)
def webhook_log(
    request: Request,
    rt: RuntimeDep,
    staff: AdminDep,
    page: int = Query(1, ge=1, le=100_000),
    status: str = Query("", pattern="^(|pending|sending|delivered|failed)$"),
) -> Response:
    """Every outbound webhook delivery, newest first: event, endpoint, state, attempts and the last answer."""
    rows = webhooks_out.log_page(rt, PAGE, (page - 1) * PAGE, status or None)
    return render(
        request,
        rt,
        staff,
        "webhooks.html",
        rows=rows,
        counts=webhooks_out.counts(rt),
        endpoints=rt.settings.webhooks.endpoints,
        status=status,
        page=page,
        more=len(rows) == PAGE,
    )


@router.post("/dashboard/webhooks/{delivery_id}")
async def webhook_send_again(request: Request, delivery_id: RowId, rt: RuntimeDep, staff: AdminDep) -> Response:
    """Put a failed delivery back in the queue (same event id); audited."""
    form = await request.form()
    if not csrf_ok(rt, request, form.get("csrf_token")):
        raise HTTPException(403, "this page was open too long; reload it and try again")
    try:
        await run_in_threadpool(webhooks_out.send_again, rt, delivery_id, staff.actor)
    except webhooks_out.NoSuchDelivery:
        raise HTTPException(404, "no such delivery") from None
    return RedirectResponse("/dashboard/webhooks?status=pending", status_code=303)


@router.get("/dashboard/workers", response_class=HTMLResponse)
def workers(request: Request, rt: RuntimeDep, staff: AdminDep) -> Response:
    """The processes running the dispatcher and their last pass, and whether /readyz says ready."""
    rows = ops.workers(rt)
    now = rt.clock.now()
    ages = {w.worker: max(0.0, (now - w.last_pass_at).total_seconds()) for w in rows}
    return render(
        request,
        rt,
        staff,
        "workers.html",
        rows=rows,
        ages=ages,
        ready=ops.readiness(rt),
        max_age=rt.settings.metrics.ready_max_age_seconds,
    )
