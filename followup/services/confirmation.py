"""Double opt-in: a contact given on the public form is its owner's only once the owner answers.

A phone number gets one "reply YES to start" text, an email address one link; nothing else goes to the contact
until it is confirmed (`dispatch.held` holds every other message). Any reply from the number, or to the
patient's reply-to address (or from their address with a passing SPF/DKIM check), confirms it: only its owner
can send from it. Contacts the clinic entered (the API, staff) count as confirmed when entered.

Requests to one number or address are limited (`contacts.confirm_per_day`) and the email link expires
(`contacts.confirm_hours`). Addresses are kept here only as keyed hashes. Called inside another service's
transaction (never commits), except `confirm_by_link`, which is a route's one service call.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from followup.core.vocab import Channel, MessageState
from followup.models import ContactConfirmation, Message, Patient
from followup.runtime import Runtime
from followup.services import audit, drafts
from followup.services.queue import queue

HOLD_UNCONFIRMED = "contact not confirmed yet"  # the reason `dispatch.held` gives; released on confirmation
PER = timedelta(days=1)


def confirmed(patient: Patient, channel: str) -> bool:
    """Whether the patient's contact on `channel` may receive more than its confirmation request."""
    return (patient.sms_confirmed_at if channel == Channel.SMS else patient.email_confirmed_at) is not None


def address_ref(rt: Runtime, channel: str, address: str) -> str:
    """A keyed hash of a number or address: the same one gives the same ref; no one gets the address back."""
    return rt.links.keyed_hash(f"{channel}:{address}", 32)


def vouch(patient: Patient, channel: str, now: datetime) -> None:
    """The clinic entered this contact: it counts as confirmed."""
    if channel == Channel.SMS:
        patient.sms_confirmed_at = patient.sms_confirmed_at or now
    else:
        patient.email_confirmed_at = patient.email_confirmed_at or now


def request(rt: Runtime, s: Session, patient: Patient, channel: str, now: datetime) -> None:
    """Queue the one confirmation request for the patient's unconfirmed contact on `channel`, unless that number
    or address has had `confirm_per_day` requests in the last day (then recorded as limited, and audited)."""
    assert patient.id is not None
    address = patient.phone if channel == Channel.SMS else patient.email
    if not address or confirmed(patient, channel):
        return
    cfg = rt.settings.contacts
    ref = address_ref(rt, channel, address)
    recent = s.exec(
        select(func.count())
        .select_from(ContactConfirmation)
        .where(ContactConfirmation.address_ref == ref, col(ContactConfirmation.requested_at) > now - PER)
    ).one()
    expires = now + timedelta(hours=cfg.confirm_hours)
    if int(recent) >= cfg.confirm_per_day:
        s.add(
            ContactConfirmation(
                patient_id=patient.id,
                channel=channel,
                address_ref=ref,
                status="limited",
                requested_at=now,
                expires_at=expires,
            )
        )
        audit.record(s, now, "system", "contact.confirmation_limited", f"patient:{patient.id}", channel=channel)
        return
    token = secrets.token_urlsafe(24) if channel == Channel.EMAIL else None
    row = ContactConfirmation(
        patient_id=patient.id,
        channel=channel,
        address_ref=ref,
        token_hash=hashlib.sha256(token.encode()).hexdigest() if token else None,
        requested_at=now,
        expires_at=expires,
    )
    s.add(row)
    s.flush()
    assert row.id is not None
    url = rt.links.confirm(token) if token else None
    queue(s, rt.settings, drafts.confirm_request(row.id, patient.id, channel, url, now), now)
    audit.record(s, now, "system", "contact.confirmation_requested", f"patient:{patient.id}", channel=channel)


def confirm(s: Session, patient: Patient, channel: str, how: str, now: datetime) -> bool:
    """Mark the contact confirmed (`how`: reply | link), close its requests and release the messages held for
    it. Returns whether it was newly confirmed."""
    assert patient.id is not None
    if confirmed(patient, channel):
        return False
    if channel == Channel.SMS:
        patient.sms_confirmed_at = now
    else:
        patient.email_confirmed_at = now
    patient.updated_at = now
    s.exec(
        update(ContactConfirmation)
        .where(
            col(ContactConfirmation.patient_id) == patient.id,
            col(ContactConfirmation.channel) == channel,
            col(ContactConfirmation.status) == "pending",
        )
        .values(status="confirmed", confirmed_at=now)
    )
    s.exec(
        update(Message)
        .where(
            col(Message.patient_id) == patient.id,
            col(Message.channel) == channel,
            col(Message.status) == MessageState.SCHEDULED,
            col(Message.reason) == HOLD_UNCONFIRMED,
        )
        .values(due_at=now, reason=None, updated_at=now)
    )
    audit.record(s, now, f"patient:{patient.id}", "contact.confirmed", f"patient:{patient.id}", channel=channel, by=how)
    return True


def link_open(rt: Runtime, token: str) -> bool:
    """Whether an email confirmation link is still good (known, unused, unexpired); changes nothing."""
    if not token or len(token) > 100:
        return False
    digest = hashlib.sha256(token.encode()).hexdigest()
    with rt.db.session() as s:
        row = s.exec(select(ContactConfirmation).where(ContactConfirmation.token_hash == digest)).first()
    return row is not None and row.status == "pending" and _aware(row.expires_at) > rt.clock.now()


def confirm_by_link(rt: Runtime, token: str) -> bool:
    """The email link: confirm the address it was sent to, once, before it expires. False: unknown, used or
    expired (the page says the same for all three)."""
    if not token or len(token) > 100:
        return False
    now = rt.clock.now()
    digest = hashlib.sha256(token.encode()).hexdigest()
    with rt.db.session() as s:
        row = s.exec(select(ContactConfirmation).where(ContactConfirmation.token_hash == digest)).first()
        if row is None or row.status != "pending" or row.patient_id is None:
            return False
        if _aware(row.expires_at) <= now:
            row.status = "expired"
            s.commit()
            return False
        patient = s.get(Patient, row.patient_id)
        if patient is None or not patient.email or address_ref(rt, Channel.EMAIL, patient.email) != row.address_ref:
            return False  # the address changed since: this link confirmed the old one
        confirm(s, patient, Channel.EMAIL, "link", now)
        s.commit()
    rt.wake()
    return True


def pending_expired(s: Session, patient: Patient, channel: str, now: datetime) -> bool:
    """Whether the patient's unconfirmed contact on `channel` has no live request left (all expired or none):
    its owner never answered, so it may be given again on the public form."""
    if confirmed(patient, channel):
        return False
    live = s.exec(
        select(ContactConfirmation.id).where(
            ContactConfirmation.patient_id == patient.id,
            ContactConfirmation.channel == channel,
            col(ContactConfirmation.expires_at) > now,
        )
    ).first()
    return live is None


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
