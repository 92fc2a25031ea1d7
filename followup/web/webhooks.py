"""Provider webhooks: delivery status (Twilio, SendGrid) and replies (inbound SMS and email).

Each checks authenticity first (403, nothing stored), then hands the parsed payload to one service function.
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from followup.services import delivery
from followup.web.deps import RuntimeDep
from followup.web.signatures import sendgrid_valid, twilio_valid

log = logging.getLogger("followup.webhooks")
router = APIRouter(prefix="/webhooks", tags=["webhooks"])
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def twilio_form(request: Request, rt: RuntimeDep) -> dict[str, str]:
    form = await request.form()
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    if len(fields) != len(form.multi_items()):
        raise HTTPException(400, "unexpected file upload")
    if not twilio_valid(rt.settings, request, fields):
        log.warning("twilio webhook %s refused: bad or missing signature", request.url.path)
        raise HTTPException(403, "invalid signature")
    return fields


@router.post("/twilio/status", include_in_schema=True)
async def twilio_status(request: Request, rt: RuntimeDep) -> Response:
    """Twilio status callback (signed). Our message id is in the callback URL (`mid`)."""
    fields = await twilio_form(request, rt)
    mid_raw = request.query_params.get("mid")
    mid = int(mid_raw) if mid_raw and mid_raw.isdigit() else None
    outcome = await run_in_threadpool(delivery.twilio_status, rt, fields, mid)
    log.info("twilio status for message %s: %s", mid, outcome)
    return Response(status_code=204)


@router.post("/sendgrid/events")
async def sendgrid_events(request: Request, rt: RuntimeDep) -> dict[str, int]:
    """SendGrid Event Webhook (ECDSA-signed; deduplicated by sg_event_id)."""
    raw = await request.body()
    if not sendgrid_valid(rt.settings, request, raw):
        log.warning("sendgrid events refused: bad, missing or stale signature")
        raise HTTPException(403, "invalid signature")
    try:
        events = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPException(400, "body is not JSON") from None
    if not isinstance(events, list):
        raise HTTPException(400, "body must be a JSON array of events")
    counts = await run_in_threadpool(delivery.sendgrid_events, rt, events)
    log.info("sendgrid events: %s", counts)
    return counts
