"""Delivery callbacks: Twilio status callbacks and SendGrid events. Each stored once; states never regress."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from followup.core.storable import storable
from followup.core.vocab import Channel, MessageState
from followup.models import DeliveryEvent, Message, Patient
from followup.runtime import Runtime
from followup.services.reachability import INVALID_CODES, OPTED_OUT_CODES, set_channel_state

log = logging.getLogger("followup.delivery")
MAX_ROW_ID = 2**31 - 1  # ids are PostgreSQL integers

RANK = {MessageState.SCHEDULED: 0, MessageState.CLAIMED: 1, MessageState.SENDING: 2, MessageState.SENT: 3}
TWILIO_STATES = {
    "accepted": MessageState.SENT,
    "queued": MessageState.SENT,
    "sending": MessageState.SENT,
    "sent": MessageState.SENT,
    "scheduled": MessageState.SENT,
    "delivered": MessageState.DELIVERED,
    "read": MessageState.DELIVERED,
    "undelivered": MessageState.UNDELIVERED,
    "failed": MessageState.FAILED,
}
SENDGRID_STATES = {
    "processed": MessageState.SENT,
    "deferred": MessageState.SENT,
    "delivered": MessageState.DELIVERED,
    "bounce": MessageState.FAILED,
    "dropped": MessageState.FAILED,
}
SENDGRID_SUPPRESS = {
    "bounce": "suppressed",
    "dropped": "suppressed",
    "spamreport": "opted_out",
    "unsubscribe": "opted_out",
    "group_unsubscribe": "opted_out",
}


def row_id(value: Any) -> int | None:
    """Our message id as a provider echoes it back (a URL parameter, a custom arg), or None if it cannot be one:
    hostile or garbled values ("1e9999", Infinity, 10**30, "²") must not reach the database as a lookup."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ROW_ID:
        return value
    return None


def insert_once(s: Session, row: dict[str, Any]) -> bool:
    """Insert a delivery event unless its key is known: one atomic statement, no check-then-insert race."""
    dialect = s.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(DeliveryEvent).values(**row)
    # RETURNING, not rowcount: psycopg reports -1 for this statement, which would count a duplicate as new.
    inserted = s.exec(ins.on_conflict_do_nothing(index_elements=["event_key"]).returning(col(DeliveryEvent.id)))
    return inserted.first() is not None


def advance(s: Session, message_id: int, status: str, now: datetime, error_code: str | None = None) -> bool:
    """Move a message forward to `status`; a terminal state is never left and no state moves backwards."""
    # `sent` only moves earlier states on; any non-terminal state may become terminal.
    allowed = (
        [st for st, r in RANK.items() if r < RANK[MessageState.SENT]] if status == MessageState.SENT else list(RANK)
    )
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status == MessageState.DELIVERED:
        values["delivered_at"] = now
    if error_code:
        values["error_code"] = error_code
    if status in (MessageState.SENT, MessageState.DELIVERED, MessageState.UNDELIVERED, MessageState.FAILED):
        values["lease_owner"] = None
        values["lease_until"] = None
    result = s.exec(
        update(Message)
        .where(col(Message.id) == message_id, col(Message.status).in_(allowed))
        .values(**values)
        # The callers read only the message's patient_id afterwards, which this does not change: no need for the
        # ORM to find and refresh the loaded object (a fifth of a callback's time in the simulator's profile).
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def twilio_status(rt: Runtime, form: dict[str, str], message_id: int | None) -> str:
    """Apply one signed status callback; returns what happened (for the audit trail and tests)."""
    sid, raw = form.get("MessageSid", ""), form.get("MessageStatus", "").lower()
    status = TWILIO_STATES.get(raw)
    now = rt.clock.now()
    with rt.db.session() as s:
        msg = s.get(Message, message_id) if message_id is not None else None
        if msg is None and sid:
            msg = s.exec(select_by_provider(sid)).first()
        if msg is None:
            return "unknown message"
        if msg.provider_id and sid and msg.provider_id != sid:
            return "provider id mismatch"
        code = form.get("ErrorCode") or None
        if not insert_once(
            s,
            {
                "event_key": f"twilio:{sid}:{raw}",
                "message_id": msg.id,
                "provider": "twilio",
                "status": raw,
                "error_code": code,
                "at": now,
            },
        ):
            return "duplicate"
        if status is None:
            s.commit()
            return "ignored status"
        assert msg.id is not None
        if not msg.provider_id and sid:
            s.exec(
                update(Message)
                .where(col(Message.id) == msg.id, col(Message.provider_id).is_(None))
                .values(provider_id=sid)
                .execution_options(synchronize_session=False)  # as in advance(): msg is not read again
            )
        moved = advance(s, msg.id, status, now, code)
        s.expire(msg)  # advance() did not refresh it; read again only if needed below
        if code and status in (MessageState.UNDELIVERED, MessageState.FAILED) and msg.patient_id is not None:
            patient = s.get(Patient, msg.patient_id)
            if patient is not None and code in OPTED_OUT_CODES:
                set_channel_state(rt, s, patient, Channel.SMS, "opted_out", f"provider_{code}", now)
            elif patient is not None and code in INVALID_CODES:
                set_channel_state(rt, s, patient, Channel.SMS, "invalid", f"provider_{code}", now)
        s.commit()
    return "applied" if moved else "kept (no regression)"


def select_by_provider(provider_id: str) -> Any:
    from sqlmodel import select

    return select(Message).where(Message.provider_id == provider_id)


def sendgrid_events(rt: Runtime, events: list[dict[str, Any]]) -> dict[str, int]:
    """Apply a batch of verified events; duplicates (same sg_event_id) are skipped."""
    counts = {"applied": 0, "duplicate": 0, "unknown": 0, "ignored": 0}
    now = rt.clock.now()
    with rt.db.session() as s:
        for ev in events:
            if not isinstance(ev, dict):
                counts["ignored"] += 1
                continue
            kind = storable(str(ev.get("event", "")))[:50]
            event_id = storable(str(ev.get("sg_event_id") or ""))[:200]
            message_id = row_id(ev.get("followup_message_id"))
            if message_id is None:
                counts["unknown"] += 1
                continue
            msg = s.get(Message, message_id)
            if msg is None or not event_id:
                counts["unknown"] += 1
                continue
            at = _ts(ev.get("timestamp")) or now
            if not insert_once(
                s,
                {
                    "event_key": f"sendgrid:{event_id}",
                    "message_id": msg.id,
                    "provider": "sendgrid",
                    "status": kind,
                    "error_code": storable(str(ev.get("status") or ""))[:50] or None,
                    "at": at,
                },
            ):
                counts["duplicate"] += 1
                continue
            if kind in SENDGRID_STATES:
                advance(
                    s,
                    message_id,
                    SENDGRID_STATES[kind],
                    now,
                    kind if SENDGRID_STATES[kind] == MessageState.FAILED else None,
                )
                s.expire(msg)  # advance() did not refresh it; read again only if needed below
            if kind in SENDGRID_SUPPRESS and msg.patient_id is not None:
                patient = s.get(Patient, msg.patient_id)
                if patient is not None:
                    set_channel_state(rt, s, patient, Channel.EMAIL, SENDGRID_SUPPRESS[kind], f"sendgrid_{kind}", now)
            counts["applied"] += 1
        s.commit()
    return counts


def _ts(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
