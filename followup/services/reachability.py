"""What a permanent failure means for a patient's channels: opted out, invalid number, suppressed email.

When one channel is lost and the other works, the patient's messages move to it; when none is left, the clinic is
told. Called inside another service's transaction; never commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from followup.core.vocab import CHANNELS, Channel, MessageKind, MessageState
from followup.models import Consent, Message, Patient
from followup.runtime import Runtime
from followup.services import audit, drafts
from followup.services.queue import queue
from followup.transports.base import SendError

OPTED_OUT_CODES = {"21610"}
RESEND_ON_NEW_CHANNEL = (MessageKind.WELCOME, MessageKind.ESCALATION, MessageKind.CHECKIN)
INVALID_CODES = {"21211", "21614", "21612", "30005", "30006", "21408"}


def reachable_channel(patient: Patient, preferred: str | None = None) -> str | None:
    """The channel to use now: `preferred`, else the patient's own, else whichever still works, a confirmed contact
    before an unconfirmed one (whose messages wait for its owner's answer); None if none."""
    usable: dict[str, bool] = {
        Channel.SMS: bool(patient.phone) and patient.sms_state == "ok",
        Channel.EMAIL: bool(patient.email) and patient.email_state == "ok",
    }
    order = [ch for ch in (preferred, patient.channel, *CHANNELS) if ch and usable.get(ch)]
    sure = [ch for ch in order if (patient.sms_confirmed_at if ch == Channel.SMS else patient.email_confirmed_at)]
    return next(iter(sure or order), None)


def on_permanent_failure(rt: Runtime, s: Session, msg: Message, err: SendError, now: datetime) -> None:
    patient = s.get(Patient, msg.patient_id) if msg.patient_id is not None else None
    if patient is None or msg.channel != Channel.SMS:
        return
    if err.code in OPTED_OUT_CODES:
        set_channel_state(rt, s, patient, Channel.SMS, "opted_out", f"provider_{err.code}", now)
    elif err.code in INVALID_CODES:
        set_channel_state(rt, s, patient, Channel.SMS, "invalid", f"provider_{err.code}", now)
        if patient.channel == Channel.EMAIL and msg.kind in RESEND_ON_NEW_CHANNEL:
            # The safety net (welcome) and escalation advice must still reach the patient: send them by email.
            queue(s, rt.settings, drafts.resent_by_email(msg, now), now)


def set_channel_state(
    rt: Runtime, s: Session, patient: Patient, channel: str, state: str, source: str, now: datetime
) -> None:
    """Record a channel's new state, move scheduled messages to the other channel if it works, and tell the
    clinic when the patient can no longer be reached at all."""
    assert patient.id is not None
    before = patient.sms_state if channel == Channel.SMS else patient.email_state
    if before == state:
        return
    if channel == Channel.SMS:
        patient.sms_state = state
    else:
        patient.email_state = state
    patient.updated_at = now
    if state == "opted_out":
        s.add(Consent(patient_id=patient.id, channel=channel, action="opt_out", source=source, at=now))
    elif state == "ok":
        s.add(Consent(patient_id=patient.id, channel=channel, action="opt_in", source=source, at=now))
    audit.record(s, now, source, f"channel.{state}", f"patient:{patient.id}", channel=channel, was=before)
    if state == "ok" or state == "opted_out":
        return  # an opt-out is the patient's choice for that channel: we do not move to another one
    other = Channel.EMAIL if channel == Channel.SMS else Channel.SMS
    other_ok = (
        (patient.email and patient.email_state == "ok")
        if other == Channel.EMAIL
        else (patient.phone and patient.sms_state == "ok")
    )
    if other_ok:
        patient.channel = other
        for msg in s.exec(
            select(Message).where(
                Message.patient_id == patient.id, Message.status == MessageState.SCHEDULED, Message.channel == channel
            )
        ):
            msg.channel, msg.updated_at = other, now
        return
    reason = f"{channel} {state.replace('_', ' ')}; no other working channel"
    context = {"patient_id": patient.id, "reason": reason, "patient_url": rt.links.patient(patient.id)}
    for ch, address in drafts.oncall(rt.settings):
        queue(s, rt.settings, drafts.unreachable_alert(patient.id, ch, address, context, now), now)
    audit.record(s, now, "system", "patient.unreachable", f"patient:{patient.id}", reason=reason)
