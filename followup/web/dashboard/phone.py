"""The patient-phone demo (outbox mode only): see what the service sent a patient and reply as them.

A reply is not written to the database here: it is posted, signed, to the app's own SMS webhook (in process,
through the whole ASGI stack), so it takes exactly the path of a real SMS: signature check, storage, then a reply
worker's red-flag reading, escalation, booking link (the page waits for the worker, so the answer shows at once).
With real providers configured every route here answers 404.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from followup.fakeprovider import sign_twilio
from followup.runtime import Runtime
from followup.services import inbound, roster
from followup.services import patients as patient_svc
from followup.services.staff import Staff
from followup.web.dashboard.common import phone_demo_available, render
from followup.web.deps import RowId, RuntimeDep
from followup.web.signatures import dev_twilio_token
from followup.web.staffauth import StaffDep, csrf_ok

router = APIRouter()
WEBHOOK = "/webhooks/twilio/sms"
MAX_REPLY = 1600  # Twilio's own limit for one inbound message
SETTLE_WAIT_S = 5.0  # at most this long for a reply worker to act on the reply before the page is shown


def _available(rt: Runtime) -> None:
    if not phone_demo_available(rt.settings):
        raise HTTPException(404, "not available when real providers are configured")


def signed_sms(rt: Runtime, sender: str, body: str) -> tuple[dict[str, str], str]:
    """The form Twilio would post for an inbound SMS, and its X-Twilio-Signature with the development token."""
    sid = "SM" + uuid.uuid4().hex
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": "ACdemo",
        "From": sender,
        "To": rt.settings.twilio.from_number or "+15005550006",
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    url = rt.settings.server.public_url + WEBHOOK
    return form, sign_twilio(url, form, dev_twilio_token(rt.settings))


@router.get("/dashboard/phone", response_class=HTMLResponse)
def phone_index(request: Request, rt: RuntimeDep, staff: StaffDep, q: str = Query("", max_length=100)) -> Response:
    """Pick a patient whose phone to play."""
    _available(rt)
    _, found = roster.search(rt, q, None, 100)
    rows = found.rows
    return render(request, rt, staff, "phone_index.html", patients=rows, q=q)


def _phone_page(
    request: Request, rt: Runtime, staff: Staff, patient_id: int, status: int = 200, error: str = "", text: str = ""
) -> Response:
    try:
        d = patient_svc.detail(rt, patient_id)
    except patient_svc.NotFound:
        raise HTTPException(404, "no such patient") from None
    # What the service sends next, so that a demo run at night does not look stuck: the confirmation request and
    # the program wait for the patient's sending hours (emergencies do not).
    # A message that will go (the confirmation request) before one held until the contact is confirmed.
    waiting = sorted(d["schedule"], key=lambda row: (row.state != "scheduled", row.message.due_at))
    return render(
        request,
        rt,
        staff,
        "phone.html",
        status,
        p=d["patient"],
        timeline=d["timeline"],
        next_out=waiting[0] if waiting else None,
        hours=(f"{rt.settings.schedule.send_from:%H:%M}", f"{rt.settings.schedule.send_until:%H:%M}"),
        error=error,
        text=text,
    )


@router.get("/dashboard/phone/{patient_id}", response_class=HTMLResponse)
def phone_view(request: Request, patient_id: RowId, rt: RuntimeDep, staff: StaffDep) -> Response:
    """The messages the service sent this patient and their replies, as on their phone."""
    _available(rt)
    return _phone_page(request, rt, staff, patient_id)


@router.post("/dashboard/phone/{patient_id}", response_class=HTMLResponse)
async def phone_reply(request: Request, patient_id: RowId, rt: RuntimeDep, staff: StaffDep) -> Response:
    """Reply as the patient: a signed inbound SMS posted to the app's own webhook."""
    _available(rt)
    form = await request.form()
    text = str(form.get("body") or "")
    if not csrf_ok(rt, request, form.get("csrf_token")):
        return _phone_page(request, rt, staff, patient_id, 403, "This page was open too long. Please try again.", text)
    if not text.strip():
        return _phone_page(request, rt, staff, patient_id, 422, "Write the patient's reply first.", text)
    if len(text) > MAX_REPLY:
        return _phone_page(
            request, rt, staff, patient_id, 422, f"A text message is at most {MAX_REPLY} characters.", text
        )
    try:
        patient = patient_svc.detail(rt, patient_id)["patient"]
    except patient_svc.NotFound:
        raise HTTPException(404, "no such patient") from None
    if not patient.phone:
        return _phone_page(request, rt, staff, patient_id, 422, "This patient has no phone number to reply from.", text)
    fields, signature = signed_sms(rt, patient.phone, text)
    status = await _post_webhook(request, rt, fields, signature)
    if status != 200:
        return _phone_page(request, rt, staff, patient_id, 502, f"The SMS webhook answered {status}.", text)
    # The webhook answered before a reply worker acted, and the worker's answer goes out through the dispatcher:
    # wait (bounded) for both, so the page shows the service's answer at once, not after a Refresh.
    deadline = time.monotonic() + SETTLE_WAIT_S
    while not await run_in_threadpool(inbound.acted_on, rt, f"twilio:{fields['MessageSid']}"):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    dispatching = bool(rt.wake_dispatcher)  # this process runs a dispatcher (else nothing here would send it)
    while dispatching and await run_in_threadpool(patient_svc.answer_pending, rt, patient_id):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    return RedirectResponse(f"/dashboard/phone/{patient_id}?done=replied", status_code=303)


async def _post_webhook(request: Request, rt: Runtime, fields: dict[str, str], signature: str) -> int:
    app: Any = request.app
    transport = httpx.ASGITransport(app=app)
    # The signature covers server.public_url + path, as for Twilio; the in-process base URL does not matter.
    async with httpx.AsyncClient(transport=transport, base_url="http://followup.internal") as client:
        response = await client.post(WEBHOOK, data=fields, headers={"X-Twilio-Signature": signature})
    return response.status_code
