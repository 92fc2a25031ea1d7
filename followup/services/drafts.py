"""Messages before they are scheduled: one small value (`Draft`) and one function per kind of message that builds
it, with its dedupe key, template, urgency and due time. `queue.queue` adds a draft to the schedule.

The dedupe keys are written here and nowhere else; where other code reads them back (the alert clock, erasure),
it asks this module for the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from followup.content.links import Links
from followup.core.program import Step
from followup.core.vocab import Channel, Level, MessageKind
from followup.models import Appointment, Escalation, Message
from followup.settings import Settings

CRISIS_CRITERIA_PREFIX = "self_harm"
OVERDOSE_CRITERIA_PREFIX = "overdose"  # Poison Control first (its message also gives 988 if it was on purpose)
REPLY_ACK = "reply_ack"  # the template of the thank-you for a reply (sent at most once a day)
REVIEW_ACK = "review_ack"  # the thank-you for a reply staff will review today (the "needs review" band)
DIGEST = "digest"  # the template of the daily digest
UNREACHABLE_ALERT = "unreachable_alert"  # the template of the alert that a patient cannot be reached


@dataclass(frozen=True)
class Draft:
    """One message to schedule. `to` is set for the clinic's messages; a patient's go to their current address."""

    dedupe_key: str  # one row per key, whatever retries happen (a unique index)
    channel: str
    kind: MessageKind
    template: str
    due_at: datetime
    patient_id: int | None = None
    to: str | None = None
    urgent: bool = False  # ignores quiet hours
    step_id: str | None = None
    question_id: str | None = None
    escalation_id: int | None = None
    context: dict[str, Any] = field(default_factory=dict, hash=False)


def oncall(settings: Settings) -> list[tuple[Channel, str]]:
    """The on-call contacts every new escalation alerts: each number by SMS, then each address by email."""
    clinic = settings.clinic
    return [(Channel.SMS, n) for n in clinic.oncall_sms] + [(Channel.EMAIL, e) for e in clinic.oncall_email]


# ---- to the patient -----------------------------------------------------------------------------------------


def step_prefix(patient_id: int, enrolled_at: datetime) -> str:
    """The dedupe keys of one enrollment's program steps start with this."""
    return f"step:{patient_id}:{enrolled_at:%Y%m%dT%H%M%S}:"


def program_step(patient_id: int, channel: str, step: Step, enrolled_at: datetime, due_at: datetime) -> Draft:
    return Draft(
        dedupe_key=step_prefix(patient_id, enrolled_at) + step.id,
        channel=channel,
        kind=step.kind,
        template=step.template,
        due_at=due_at,
        patient_id=patient_id,
        step_id=step.id,
        question_id=step.question,
    )


def escalation_reply(
    esc: Escalation,
    patient_id: int,
    channel: str,
    criteria: list[str],
    links: Links,
    now: datetime,
    *,
    source: str = "reply",
    alerted: bool = False,
) -> Draft:
    """What the patient should do now: an emergency (or crisis) message, or the booking link for a red flag.
    `source` (the intake form, "triage", or a "reply") and `alerted` (an on-call contact was alerted) let the text
    say what really happened."""
    assert esc.id is not None
    context: dict[str, Any] = {"source": source, "alerted": alerted}
    if esc.level == Level.EMERGENCY:
        crisis = any(c.startswith(CRISIS_CRITERIA_PREFIX) for c in criteria)
        overdose = any(c.startswith(OVERDOSE_CRITERIA_PREFIX) for c in criteria)
        template = "escalation_overdose" if overdose else "escalation_selfharm" if crisis else "escalation_emergency"
    else:
        template = "escalation_red_flag"
        context["booking_url"] = links.booking(esc.id, esc.nonce)
    return Draft(
        dedupe_key=f"esc:{esc.id}:{esc.tier}:patient",
        channel=channel,
        kind=MessageKind.ESCALATION,
        template=template,
        due_at=now,
        patient_id=patient_id,
        urgent=True,
        escalation_id=esc.id,
        context=context,
    )


def consent_reply(
    inbound_id: int, patient_id: int, channel: str, template: str, now: datetime, back: bool = False
) -> Draft:
    """The confirmation of an opt-out or opt-in, or the HELP answer, to the reply that asked for it. `back`: an
    opt-in that ends an opt-out ("welcome back"), not a YES from someone who never left."""
    return Draft(
        dedupe_key=f"inbound:{inbound_id}:{template}",
        channel=channel,
        kind=MessageKind.CONSENT,
        template=template,
        due_at=now,
        patient_id=patient_id,
        urgent=True,
        context={"back": back},
    )


# "Reply YES to start" / the email link: the one message an unconfirmed contact gets (double opt-in).
CONFIRM_REQUEST = "confirm_request"


def confirm_request(
    confirmation_id: int, patient_id: int, channel: str, confirm_url: str | None, now: datetime
) -> Draft:
    """The double opt-in: ask the owner of a contact given on the public form to confirm it."""
    return Draft(
        dedupe_key=f"confirm:{confirmation_id}",
        channel=channel,
        kind=MessageKind.CONSENT,
        template=CONFIRM_REQUEST,
        due_at=now,
        patient_id=patient_id,
        urgent=False,
        context={"confirm_url": confirm_url} if confirm_url else {},
    )


def reply_ack(patient_id: int, channel: str, now: datetime) -> Draft:
    return Draft(
        dedupe_key=f"ack:{patient_id}:{now:%Y%m%dT%H%M%S}",
        channel=channel,
        kind=MessageKind.SYSTEM,
        template=REPLY_ACK,
        due_at=now,
        patient_id=patient_id,
        urgent=True,
    )


def review_ack(esc: Escalation, patient_id: int, channel: str, now: datetime) -> Draft:
    """The routine thank-you plus "we will read your message today": a reply gone to staff review. Once per
    review item (a second reply added to it gets no second one)."""
    assert esc.id is not None
    return Draft(
        dedupe_key=f"esc:{esc.id}:review:patient",
        channel=channel,
        kind=MessageKind.SYSTEM,
        template=REVIEW_ACK,
        due_at=now,
        patient_id=patient_id,
        urgent=True,
        escalation_id=esc.id,
    )


def booking_confirmation(
    appt: Appointment,
    esc: Escalation,
    event: str,
    patient_id: int,
    channel: str,
    context: dict[str, Any],
    now: datetime,
) -> Draft:
    """The patient's own visit booked, moved or cancelled (`event`), at once: they just did it."""
    return Draft(
        dedupe_key=f"appt:{appt.id}:{event}:patient",
        channel=channel,
        kind=MessageKind.SYSTEM,
        template="booking_cancelled" if event == "cancelled" else "booking_confirm",
        due_at=now,
        patient_id=patient_id,
        urgent=True,
        escalation_id=esc.id,
        context=context,
    )


def resent_by_email(msg: Message, now: datetime) -> Draft:
    """An SMS the provider refused for an invalid number, again by email, now."""
    return Draft(
        dedupe_key=f"{msg.dedupe_key}:{Channel.EMAIL}",
        channel=Channel.EMAIL,
        kind=MessageKind(msg.kind),
        template=msg.template,
        due_at=now,
        patient_id=msg.patient_id,
        urgent=msg.urgent,
        step_id=msg.step_id,
        question_id=msg.question_id,
        escalation_id=msg.escalation_id,
        context=msg.context,
    )


# ---- to the clinic ------------------------------------------------------------------------------------------


def alert_prefix(escalation_id: int, tier: str) -> str:
    """The dedupe keys of the alerts for an escalation at one tier start with this."""
    return f"esc:{escalation_id}:{tier}:alert"


def clinic_alert(esc: Escalation, channel: str, address: str, context: dict[str, Any], now: datetime) -> Draft:
    """A new escalation, or one that moved up a tier, to one on-call contact."""
    assert esc.id is not None
    return Draft(
        dedupe_key=f"{alert_prefix(esc.id, esc.tier)}:{channel}:{address}",
        channel=channel,
        kind=MessageKind.ALERT,
        template="clinic_alert",
        due_at=now,
        to=address,
        urgent=True,
        escalation_id=esc.id,
        context=context,
    )


def realert(esc: Escalation, round_: int, channel: str, address: str, context: dict[str, Any], now: datetime) -> Draft:
    """An escalation still unacknowledged, to one contact of the next on-call tier."""
    return Draft(
        dedupe_key=f"esc:{esc.id}:realert:{round_}:{channel}:{address}",
        channel=channel,
        kind=MessageKind.ALERT,
        template="realert",
        due_at=now,
        to=address,
        urgent=True,
        escalation_id=esc.id,
        context=context,
    )


def unreachable_prefix(patient_id: int) -> str:
    """The dedupe keys of the alerts that a patient cannot be reached start with this (they carry no patient)."""
    return f"unreachable:{patient_id}:"


def unreachable_alert(patient_id: int, channel: str, address: str, context: dict[str, Any], now: datetime) -> Draft:
    return Draft(
        dedupe_key=f"{unreachable_prefix(patient_id)}{now:%Y%m%dT%H%M%S}:{channel}:{address}",
        channel=channel,
        kind=MessageKind.ALERT,
        template=UNREACHABLE_ALERT,
        due_at=now,
        to=address,
        urgent=True,
        context=context,
    )


def booking_notice(
    appt: Appointment, esc: Escalation, event: str, channel: str, address: str, context: dict[str, Any], now: datetime
) -> Draft:
    """A visit booked, moved or cancelled, to the clinic: within its sending window (not urgent)."""
    return Draft(
        dedupe_key=f"appt:{appt.id}:{event}:clinic:{channel}:{address}",
        channel=channel,
        kind=MessageKind.NOTICE,
        template="clinic_booking_notice",
        due_at=now,
        to=address,
        escalation_id=esc.id,
        context=context,
    )


def digest(day: str, address: str, context: dict[str, Any], now: datetime) -> Draft:
    """The day's digest (`day`: the clinic-local date) to one on-call address."""
    return Draft(
        dedupe_key=f"digest:{day}:{Channel.EMAIL}:{address}",
        channel=Channel.EMAIL,
        kind=MessageKind.DIGEST,
        template=DIGEST,
        due_at=now,
        to=address,
        urgent=True,  # staff email at the hour the clinic chose: not held by the patients' quiet hours
        context=context,
    )
