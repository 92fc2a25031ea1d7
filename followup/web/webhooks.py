"""Provider webhooks: delivery status (Twilio, SendGrid) and replies (inbound SMS and email).

Each checks authenticity first (403, nothing stored), then stores what it received with one service call and
answers; acting on it (a reply read for red flags, a delivery state applied) is a worker's job, after the answer.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from followup import metrics
from followup.core.replies import Reply, normalise_sender
from followup.core.storable import storable
from followup.parsing.inbound_email import BadInbound, parse_sendgrid
from followup.services import delivery, inbound, inbound_auth, voice
from followup.transports.twilio_voice import say_twiml
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
    """Twilio status callback (signed). Our message id is in the callback URL (`mid`). Stored and answered; applied
    in batches by a worker."""
    fields = await twilio_form(request, rt)
    metrics.CALLBACKS.labels("twilio_status").inc()
    mid = delivery.row_id(request.query_params.get("mid"))
    stored = await run_in_threadpool(delivery.store_twilio, rt, fields, mid)
    log.info("twilio status for message %s stored (new: %s)", mid, stored)
    return Response(status_code=204, background=_applying(request, rt, stored))


@router.post("/sendgrid/events")
async def sendgrid_events(request: Request, rt: RuntimeDep) -> Response:
    """SendGrid Event Webhook (ECDSA-signed; deduplicated by sg_event_id). Stored and answered; applied in batches
    by a worker. Answers {"stored", "duplicate", "ignored"} (ignored: no sg_event_id or no message id of ours)."""
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
    metrics.CALLBACKS.labels("sendgrid_events").inc(len(events))
    counts = await run_in_threadpool(delivery.store_sendgrid, rt, events)
    log.info("sendgrid events: %s", counts)
    return JSONResponse(counts, background=_applying(request, rt, counts["stored"] > 0))


@router.post("/twilio/sms")
async def twilio_sms(request: Request, rt: RuntimeDep) -> Response:
    """Inbound SMS (signed). Stored once per MessageSid and answered with TwiML at once (empty, or who we are to an
    unknown number); a reply worker reads it for red flags and acts. A text over its number's flood limit is stored
    too, marked, and read within the number's budget (finding 9)."""
    fields = await twilio_form(request, rt)
    metrics.CALLBACKS.labels("twilio_sms").inc()
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
    stored = await run_in_threadpool(inbound.store, rt, reply)
    log.info("inbound sms %s stored (duplicate: %s)", stored.inbound_id, stored.duplicate)
    text = ""
    if stored.unknown_sender and stored.inbound_id is not None and not flood:
        text = await run_in_threadpool(inbound.unknown_sender_reply, rt, reply.sender)
    return Response(twiml(text), media_type="application/xml", background=_acting(request, rt, stored.inbound_id))


@router.post("/sendgrid/inbound")
async def sendgrid_inbound(request: Request, rt: RuntimeDep) -> Response:
    """SendGrid Inbound Parse (multipart; HTTP Basic credentials from settings). Deduplicated by Message-ID; stored
    and answered, then acted on by a reply worker."""
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
    metrics.CALLBACKS.labels("sendgrid_inbound").inc()
    try:
        reply = parse_sendgrid(fields, cfg.reply_domain, attachments)
    except BadInbound as exc:
        raise HTTPException(400, str(exc)) from None
    stored = await run_in_threadpool(inbound.store, rt, reply)
    log.info("inbound email %s stored (duplicate: %s)", stored.inbound_id, stored.duplicate)
    return JSONResponse(
        {"inbound_id": stored.inbound_id, "duplicate": stored.duplicate},
        background=_acting(request, rt, stored.inbound_id),
    )


def _applying(request: Request, rt: RuntimeDep, stored: bool) -> BackgroundTask | None:
    """Who applies delivery events just stored: as `_acting` for replies (workers in other processes find them on
    their next pass, every `dispatch.interval_seconds`: batches, not a wake-up per callback)."""
    if not stored or rt.wake_ingest_workers() or not request.app.state.act_after_answer:
        return None
    return BackgroundTask(delivery.apply_pending, rt)


def _acting(request: Request, rt: RuntimeDep, inbound_id: int | None) -> BackgroundTask | None:
    """Who acts on a reply just stored, once the answer is sent: this process's reply worker (woken now), else,
    without one, this request after its answer (`create_app(act_on_replies=...)`), else `followup worker`
    processes (woken by the NOTIFY sent with the insert). The answer never waits for red-flag reading."""
    if inbound_id is None or rt.wake_ingest_workers() or not request.app.state.act_after_answer:
        return None
    return BackgroundTask(inbound.act_on, rt, inbound_id)


def _voice_call(request: Request, rt: RuntimeDep) -> int:
    call_id = rt.links.voice_call(request.query_params.get("t", ""))
    if call_id is None:
        raise HTTPException(403, "invalid call token")
    return call_id


@router.post("/twilio/voice/gather")
async def twilio_voice_gather(request: Request, rt: RuntimeDep) -> Response:
    """The key pressed on an emergency call (signed; our signed call token in the URL): 1 acknowledges."""
    fields = await twilio_form(request, rt)
    call_id = _voice_call(request, rt)
    metrics.CALLBACKS.labels("twilio_voice").inc()
    spoken = await run_in_threadpool(voice.key_pressed, rt, call_id, fields.get("Digits", ""))
    return Response(say_twiml(spoken.text, spoken.language), media_type="application/xml")


@router.post("/twilio/voice/status")
async def twilio_voice_status(request: Request, rt: RuntimeDep) -> Response:
    """How an emergency call ended (signed): no answer, busy, failed or no key moves to the next tier."""
    fields = await twilio_form(request, rt)
    call_id = _voice_call(request, rt)
    metrics.CALLBACKS.labels("twilio_voice").inc()
    moved = await run_in_threadpool(voice.call_ended, rt, call_id, fields.get("CallStatus", ""))
    log.info("voice call %s ended %s; next tier alerted: %s", call_id, fields.get("CallStatus", "")[:20], moved)
    return Response(status_code=204)


def _seconds(wait: timedelta) -> int:
    return max(1, math.ceil(wait.total_seconds()))
