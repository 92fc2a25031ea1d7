"""Provider webhooks: delivery status (Twilio, SendGrid) and replies (inbound SMS and email).

Each checks authenticity first (403, nothing stored), then hands the parsed payload to one service function.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from followup.core.replies import Reply, normalise_sender
from followup.core.storable import storable
from followup.parsing.inbound_email import BadInbound, parse_sendgrid
from followup.services import delivery, inbound, inbound_auth
from followup.transports.webhook_auth import twiml
from followup.web.deps import RuntimeDep
from followup.web.limits import FLOOD, client_key
from followup.web.signatures import basic_auth_valid, sendgrid_valid, twilio_valid

log = logging.getLogger("followup.webhooks")
router = APIRouter(prefix="/webhooks", tags=["webhooks"])


async def twilio_form(request: Request, rt: RuntimeDep) -> dict[str, str]:
    form = await request.form()
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    if len(fields) != len(form.multi_items()):
        raise HTTPException(400, "unexpected file upload")
    if not twilio_valid(rt.settings, request, fields):
        log.warning("twilio webhook %s refused: bad or missing signature", request.url.path)
        raise HTTPException(403, "invalid signature")
    return {k: storable(v) for k, v in fields.items()}  # signed as posted; stored without NUL


@router.post("/twilio/status", include_in_schema=True)
async def twilio_status(request: Request, rt: RuntimeDep) -> Response:
    """Twilio status callback (signed). Our message id is in the callback URL (`mid`)."""
    fields = await twilio_form(request, rt)
    mid = delivery.row_id(request.query_params.get("mid"))
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


@router.post("/twilio/sms")
async def twilio_sms(request: Request, rt: RuntimeDep) -> Response:
    """Inbound SMS (signed). Stored once per MessageSid; red flags escalate at once; answered with TwiML. A text
    over its number's flood limit is stored too, marked, and read within the number's budget (finding 9)."""
    fields = await twilio_form(request, rt)
    flood = request.scope.get(FLOOD)  # set by limits.SenderLimits: over the per-number limit, still stored
    sid = fields.get("MessageSid") or fields.get("SmsSid") or ""
    if not sid:
        raise HTTPException(400, "MessageSid is missing")
    reply = Reply(
        channel="sms",
        provider_key=f"twilio:{sid}",
        sender=normalise_sender(fields.get("From", ""), rt.settings.clinic.default_region),
        body=fields.get("Body", ""),
        provider_opt_out=fields.get("OptOutType") or None,
        meta={
            "num_media": fields.get("NumMedia", "0"),
            "num_segments": fields.get("NumSegments", ""),
            **({"flood": flood} if flood else {}),
        },
    )
    result = await run_in_threadpool(inbound.receive, rt, reply)
    log.info("inbound sms %s: intent %s level %s", result.inbound_id, result.intent, result.level)
    text = ""
    if result.intent == "unknown_sender" and result.inbound_id is not None and not flood:
        text = await run_in_threadpool(inbound.unknown_sender_reply, rt, reply.sender)
    return Response(twiml(text), media_type="application/xml")


@router.post("/sendgrid/inbound")
async def sendgrid_inbound(request: Request, rt: RuntimeDep) -> dict[str, object]:
    """SendGrid Inbound Parse (multipart; HTTP Basic credentials from settings). Deduplicated by Message-ID."""
    cfg = rt.settings.sendgrid
    address = client_key(request.scope)
    wait = await run_in_threadpool(inbound_auth.retry_after, rt, address)
    if wait > timedelta(0):  # too many failed credentials from this address: nothing is checked (SendGrid retries)
        raise HTTPException(503, "too many failed credentials", headers={"Retry-After": str(_seconds(wait))})
    if not basic_auth_valid(request, cfg.inbound_username, cfg.inbound_password):
        await run_in_threadpool(inbound_auth.failed, rt, address)
        raise HTTPException(401, "credentials required", headers={"WWW-Authenticate": 'Basic realm="inbound"'})
    try:
        # Parts up to the inbound limit: raw mode posts the whole MIME message, photo included, as one field, and
        # Starlette's default 1 MB per part refused "I can't breathe" with a picture attached (finding 8).
        form = await request.form(max_files=50, max_fields=200, max_part_size=cfg.inbound_max_bytes)
    except Exception:
        raise HTTPException(400, "body is not multipart/form-data") from None
    fields: dict[str, str] = {}
    attachments: list[dict[str, object]] = []
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(key, value)  # a duplicated field keeps its first value
        else:
            attachments.append(
                {
                    "field": key,
                    "filename": (value.filename or "")[:200],
                    "type": (value.content_type or "")[:100],
                    "size": value.size,
                }
            )
    await form.close()
    try:
        reply = parse_sendgrid(fields, cfg.reply_domain, attachments)
    except BadInbound as exc:
        raise HTTPException(400, str(exc)) from None
    result = await run_in_threadpool(inbound.receive, rt, reply)
    log.info("inbound email %s: intent %s level %s", result.inbound_id, result.intent, result.level)
    return {"inbound_id": result.inbound_id, "duplicate": result.duplicate}


def _seconds(wait: timedelta) -> int:
    return max(1, math.ceil(wait.total_seconds()))
