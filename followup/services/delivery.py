"""Delivery callbacks: Twilio status callbacks and SendGrid events. Each stored once; states never regress.

The webhooks only store what they receive (`store_twilio`, `store_sendgrid`: one insert-on-conflict statement each)
and answer; a worker applies the stored events in batches (`apply_pending`: one UPDATE per resulting state). An event
whose message cannot be found yet (a callback can beat the commit of the send) stays pending and is tried again on
later passes; after GIVE_UP_AFTER it is kept as 'unknown message'. `twilio_status` and `sendgrid_events` apply one
callback at once, in the caller's thread (the simulator)."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Integer, bindparam, update
from sqlmodel import Session, SQLModel, col, select

from followup.core.delivery import RANK, allowed_from, fold
from followup.core.storable import storable
from followup.core.vocab import Channel, MessageState
from followup.db import insert_new
from followup.models import DeliveryEvent, Message, Patient
from followup.runtime import Runtime
from followup.services.reachability import INVALID_CODES, OPTED_OUT_CODES, set_channel_state

log = logging.getLogger("followup.delivery")
MAX_ROW_ID = 2**31 - 1  # ids are PostgreSQL integers
GIVE_UP_AFTER = timedelta(days=1)  # an event whose message is still unknown after this never will be
BATCH = 500
__all__ = ["RANK"]
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
    inserted = s.connection().execute(insert_new(s.get_bind().dialect.name, "deliveryevent", "event_key"), row)
    return inserted.first() is not None


def advance(s: Session, message_id: int, status: str, now: datetime, error_code: str | None = None) -> bool:
    """Move a message forward to `status`; a terminal state is never left and no state moves backwards."""
    allowed = allowed_from(status)  # `sent` only moves earlier states on; any non-terminal state may become terminal
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
                "ref": message_id,
                "sid": sid or None,
                "outcome": "applied in request",
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
                    "ref": message_id,
                    "outcome": "applied in request",
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


def _twilio_key(sid: str, raw: str, ref: int | None) -> str:
    return f"twilio:{sid}:{raw}" if sid else f"twilio:mid{ref}:{raw}"


def store_twilio(rt: Runtime, form: dict[str, str], message_id: int | None) -> bool:
    """Store one signed status callback, unapplied, in one statement; False: a duplicate (a provider retry)."""
    sid, raw = form.get("MessageSid", "")[:100], form.get("MessageStatus", "").lower()[:50]
    now = rt.clock.now()
    with rt.db.session() as s:
        stored = insert_once(
            s,
            {
                "event_key": _twilio_key(sid, raw, message_id),
                "provider": "twilio",
                "status": raw,
                "error_code": (form.get("ErrorCode") or "")[:50] or None,
                "at": now,
                "ref": message_id,
                "sid": sid or None,
            },
        )
        s.commit()
    return stored


def store_sendgrid(rt: Runtime, events: list[Any]) -> dict[str, int]:
    """Store a batch of verified SendGrid events, unapplied, in one statement. Events without an sg_event_id or
    without our message id can never be applied: counted as ignored, not stored."""
    now = rt.clock.now()
    rows: list[dict[str, Any]] = []
    for ev in events:
        ref = row_id(ev.get("followup_message_id")) if isinstance(ev, dict) else None
        event_id = storable(str(ev.get("sg_event_id") or ""))[:200] if isinstance(ev, dict) else ""
        if ref is None or not event_id:
            continue
        assert isinstance(ev, dict)
        rows.append(
            {
                "event_key": f"sendgrid:{event_id}",
                "provider": "sendgrid",
                "status": storable(str(ev.get("event", "")))[:50],
                "error_code": storable(str(ev.get("status") or ""))[:50] or None,
                "at": _ts(ev.get("timestamp")) or now,
                "ref": ref,
                "tries": 0,
            }
        )
    inserted = 0
    if rows:
        with rt.db.session() as s:
            # executemany of the one statement: SQLAlchemy sends it as multi-row INSERTs ("insertmanyvalues"), and
            # RETURNING yields only the rows inserted
            stmt = insert_new(s.get_bind().dialect.name, "deliveryevent", "event_key")
            inserted = len(s.connection().execute(stmt, rows).all())
            s.commit()
    return {"stored": inserted, "duplicate": len(rows) - inserted, "ignored": len(events) - len(rows)}


def apply_pending(rt: Runtime, limit: int = BATCH) -> int:
    """Apply up to `limit` stored events (fresh ones first, then those whose message was not found before), in one
    transaction: the messages they move are written with one UPDATE per resulting state, each guarded so that no
    state moves backwards whatever happened since the read. Returns how many events it took. On PostgreSQL the
    events are locked (SKIP LOCKED): workers applying at once take disjoint batches."""
    now = rt.clock.now()
    with rt.db.session() as s:
        evs = list(s.exec(_pick_pending(s.get_bind().dialect.name), params={"b_limit": limit}).all())
        if not evs:
            return 0
        found = _messages(s, evs)
        targets: list[tuple[int, str]] = []
        plan: list[tuple[DeliveryEvent, Any, str | None]] = []  # (event, message row or None, target state)
        for ev in evs:
            msg = found.get(("id", ev.ref)) if ev.ref is not None else None
            if msg is None and ev.sid:
                msg = found.get(("sid", ev.sid))
            to = (TWILIO_STATES if ev.provider == "twilio" else SENDGRID_STATES).get(ev.status)
            plan.append((ev, msg, str(to) if to is not None else None))
            if msg is not None and to is not None and not _mismatch(ev, msg):
                targets.append((msg.id, str(to)))
        states, moved_flags = fold({m.id: m.status for m in found.values()}, targets)
        moved = iter(moved_flags)
        changed: dict[int, tuple[str, str | None]] = {}  # message id -> (state, error code of the event that moved it)
        updates: list[dict[str, Any]] = []
        effects: list[tuple[int, str, str, str]] = []  # (patient id, channel, reachability state, source)
        outcomes: Counter[str] = Counter()
        for ev, msg, target in plan:
            outcome: str | None
            if msg is None:
                gave_up = ev.at.replace(tzinfo=ev.at.tzinfo or UTC) < now - GIVE_UP_AFTER
                outcome = "unknown message" if gave_up else None
            elif _mismatch(ev, msg):
                outcome = "provider id mismatch"
            elif target is None:
                outcome = "ignored status" if ev.provider == "twilio" else "applied"
            elif next(moved):
                outcome = "applied"
                code = ev.error_code if ev.provider == "twilio" else ev.status
                changed[msg.id] = (
                    states[msg.id],
                    code if target in (MessageState.FAILED, MessageState.UNDELIVERED) else None,
                )
            else:
                outcome = "kept (no regression)"
            if msg is not None and outcome not in ("provider id mismatch",):
                effects.extend(_effects(ev, msg, target))
            outcomes[outcome or "pending"] += 1
            updates.append(
                {
                    "eid": ev.id,
                    "o": outcome,
                    "m": msg.id if msg is not None and outcome != "provider id mismatch" else None,
                    "t": ev.tries + (1 if outcome is None else 0),
                }
            )
        _write_states(s, changed, now)
        for ev, msg, _ in plan:  # a callback that beat the send's commit: the provider's id is learnt here
            if msg is not None and ev.sid and not msg.provider_id and ev.provider == "twilio":
                s.exec(
                    update(Message)
                    .where(col(Message.id) == msg.id, col(Message.provider_id).is_(None))
                    .values(provider_id=ev.sid)
                    .execution_options(synchronize_session=False)
                )
        table = DeliveryEvent.__table__  # type: ignore[attr-defined]
        s.connection().execute(
            update(table)
            .where(table.c.id == bindparam("eid"))
            .values(outcome=bindparam("o"), message_id=bindparam("m"), tries=bindparam("t")),
            updates,
        )
        for patient_id, channel, state, source in _unique(effects):
            patient = s.get(Patient, patient_id)
            if patient is not None:
                set_channel_state(rt, s, patient, channel, state, source, now)
        s.commit()
    log.info("delivery events applied: %s", dict(outcomes))
    return len(evs)


def _messages(s: Session, evs: list[DeliveryEvent]) -> dict[tuple[str, Any], Any]:
    """The messages the events name, by our id and by the provider's id: two reads for the whole batch."""
    refs = {ev.ref for ev in evs if ev.ref is not None}
    found: dict[tuple[str, Any], Any] = {}
    conn = s.connection()
    if refs:
        for row in conn.execute(_BY_ID, {"b_ids": list(refs)}).all():
            found[("id", row.id)] = row
    sids = {ev.sid for ev in evs if ev.sid and ("id", ev.ref) not in found}
    if sids:
        for row in conn.execute(_BY_SID, {"b_sids": list(sids)}).all():
            found[("sid", row.provider_id)] = row
    return found


def _mismatch(ev: DeliveryEvent, msg: Any) -> bool:
    """The callback names our message but another provider id: not ours to apply."""
    return bool(msg.provider_id and ev.sid and msg.provider_id != ev.sid)


def _effects(ev: DeliveryEvent, msg: Any, target: str | None) -> list[tuple[int, str, str, str]]:
    """What an event means for reaching the patient: a carrier refusal or an invalid number (Twilio), a bounce,
    a spam report or an unsubscribe (SendGrid)."""
    if msg.patient_id is None:
        return []
    if ev.provider == "twilio":
        code = ev.error_code
        if code and target in (MessageState.UNDELIVERED, MessageState.FAILED):
            if code in OPTED_OUT_CODES:
                return [(msg.patient_id, Channel.SMS, "opted_out", f"provider_{code}")]
            if code in INVALID_CODES:
                return [(msg.patient_id, Channel.SMS, "invalid", f"provider_{code}")]
        return []
    if ev.status in SENDGRID_SUPPRESS:
        return [(msg.patient_id, Channel.EMAIL, SENDGRID_SUPPRESS[ev.status], f"sendgrid_{ev.status}")]
    return []


def _unique(effects: list[tuple[int, str, str, str]]) -> list[tuple[int, str, str, str]]:
    return list(dict.fromkeys(effects))


def _write_states(s: Session, changed: dict[int, tuple[str, str | None]], now: datetime) -> None:
    """One UPDATE per (state, error code): the messages that move there, each only from a state it may leave."""
    groups: dict[tuple[str, str | None], list[int]] = {}
    for message_id, key in changed.items():
        groups.setdefault(key, []).append(message_id)
    conn = s.connection()
    for (status, code), ids in groups.items():
        conn.execute(_state_statement(status, code is not None), {"b_ids": ids, "b_now": now, "b_code": code})


@cache
def _state_statement(status: str, with_code: bool) -> Any:
    """Move the messages :b_ids to `status` at :b_now (with the error code :b_code), each only from a state it may
    leave. Built once per (state, with a code or not): the ingest worker runs a few every pass."""
    t = _MESSAGE
    now = bindparam("b_now", type_=t.c.updated_at.type)
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status == MessageState.DELIVERED:
        values["delivered_at"] = now
    if with_code:
        values["error_code"] = bindparam("b_code", type_=t.c.error_code.type)
    if status in (MessageState.SENT, MessageState.DELIVERED, MessageState.UNDELIVERED, MessageState.FAILED):
        values["lease_owner"] = None
        values["lease_until"] = None
    return (
        update(t)
        .where(t.c.id.in_(bindparam("b_ids", expanding=True)), t.c.status.in_(allowed_from(status)))
        .values(**values)
    )


@cache
def _pick_pending(dialect: str) -> Any:
    """Up to :b_limit stored events not applied yet, fresh ones first (locked, SKIP LOCKED, on PostgreSQL)."""
    pick = (
        select(DeliveryEvent)
        .where(col(DeliveryEvent.outcome).is_(None))
        .order_by(col(DeliveryEvent.tries), col(DeliveryEvent.id))
        .limit(bindparam("b_limit", type_=Integer))
    )
    return pick.with_for_update(skip_locked=True) if dialect == "postgresql" else pick


_MESSAGE = SQLModel.metadata.tables["message"]
_STATE_COLUMNS = (_MESSAGE.c.id, _MESSAGE.c.provider_id, _MESSAGE.c.status, _MESSAGE.c.patient_id)
_BY_ID = select(*_STATE_COLUMNS).where(_MESSAGE.c.id.in_(bindparam("b_ids", expanding=True)))
_BY_SID = select(*_STATE_COLUMNS).where(_MESSAGE.c.provider_id.in_(bindparam("b_sids", expanding=True)))
