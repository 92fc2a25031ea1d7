"""Alerts that someone owns: acknowledgement deadlines per tier, and re-alerting the next on-call tier.

An emergency or urgent escalation still `open` (not acknowledged) one SLA after its last alert is re-alerted to
the next tier of the on-call list (tier 0 is clinic.oncall_*, then alerts.escalation_tiers; the last tier is
repeated), again every SLA until someone acknowledges. Each round is an `EscalationAlert` row whose unique
(escalation, round) makes a second process running the same job a no-op. Routine escalations are not re-alerted:
they go in the daily digest (services/digest.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from followup.core.vocab import ABOVE_ROUTINE, Channel, EscalationStatus, MessageKind, Tier
from followup.models import Escalation, EscalationAlert, Message, VoiceCall
from followup.runtime import Runtime
from followup.services import audit, drafts
from followup.services.escalation import criteria_labels
from followup.services.queue import queue
from followup.settings import Settings

log = logging.getLogger("followup.alerting")


def sla(settings: Settings, tier: str) -> timedelta:
    """How long an escalation of this tier may wait for an acknowledgement."""
    a = settings.alerts
    if tier == Tier.EMERGENCY:
        return timedelta(minutes=a.emergency_ack_minutes)
    if tier == Tier.URGENT:
        return timedelta(minutes=a.urgent_ack_minutes)
    return timedelta(hours=a.routine_ack_hours)


def contact_tiers(settings: Settings) -> list[list[tuple[Channel, str]]]:
    """Tier 0 (the on-call contacts every new escalation alerts), then the configured escalation tiers."""
    first = drafts.oncall(settings)
    rest = [
        [(Channel.EMAIL if "@" in c else Channel.SMS, c) for c in tier] for tier in settings.alerts.escalation_tiers
    ]
    return [first, *rest]


def tier_index(settings: Settings, round_: int) -> int:
    """Round n goes to tier n; past the last tier, the last tier again."""
    return min(round_, len(contact_tiers(settings)) - 1)


def realert_due(tier: str, status: str, last_alert_at: datetime, now: datetime, settings: Settings) -> bool:
    """Whether an escalation needs another alert now (pure: the job and the tests share it)."""
    return status == EscalationStatus.OPEN and tier in ABOVE_ROUTINE and now - last_alert_at >= sla(settings, tier)


@dataclass(frozen=True)
class Clock:
    """An escalation's acknowledgement clock as the dashboard shows it."""

    due_at: datetime | None  # None once acknowledged, booked or closed
    overdue: bool
    last_alert_at: datetime
    rounds: int


@dataclass(frozen=True)
class AlertState:
    last_alert_at: datetime | None  # the latest alert message (at opening, on an upgrade, or a re-alert)
    rounds: int  # re-alert rounds so far
    tier_since: datetime | None  # the first alert at the escalation's current tier: its clock starts there


def ack_clock(settings: Settings, esc: Escalation, state: AlertState, now: datetime) -> Clock:
    last = state.last_alert_at or esc.created_at
    if esc.status != EscalationStatus.OPEN:
        return Clock(None, False, last, state.rounds)
    due = (state.tier_since or esc.created_at) + sla(settings, esc.tier)
    return Clock(due, now >= due, last, state.rounds)


def alert_state(rt: Runtime, escalations: list[Escalation]) -> dict[int, AlertState]:
    """What the alert messages and re-alert rounds say about each escalation."""
    ids = [e.id for e in escalations if e.id is not None]
    if not ids:
        return {}
    with rt.db.session() as s:
        sent = s.exec(
            select(Message.escalation_id, Message.dedupe_key, Message.created_at).where(
                col(Message.escalation_id).in_(ids), Message.kind == MessageKind.ALERT
            )
        ).all()
        # The round number and its time come from one statement: read apart, another worker's round could be
        # counted without its time, and this one would think the next round overdue at once.
        rounds = {
            eid: (n, at)
            for eid, n, at in s.exec(
                select(EscalationAlert.escalation_id, func.max(EscalationAlert.round), func.max(EscalationAlert.at))
                .where(col(EscalationAlert.escalation_id).in_(ids))
                .group_by(col(EscalationAlert.escalation_id))
            ).all()
        }
    out = {}
    for esc in escalations:
        assert esc.id is not None
        mine = [(key, at) for eid, key, at in sent if eid == esc.id]
        at_tier = [at for key, at in mine if key.startswith(drafts.alert_prefix(esc.id, esc.tier))]
        n, round_at = rounds.get(esc.id, (0, None))
        times = [at for _, at in mine] + ([round_at] if round_at is not None else [])
        out[esc.id] = AlertState(max(times, default=None), int(n or 0), min(at_tier, default=None))
    return out


def run_realerts(rt: Runtime) -> int:
    """One pass of the re-alert job: alert the next tier for every overdue, unacknowledged escalation."""
    now = rt.clock.now()
    with rt.db.session() as s:
        open_ = list(
            s.exec(
                select(Escalation).where(
                    Escalation.status == EscalationStatus.OPEN, col(Escalation.tier).in_(ABOVE_ROUTINE)
                )
            ).all()
        )
    state = alert_state(rt, open_)
    sent = 0
    for esc in open_:
        assert esc.id is not None
        last = state[esc.id].last_alert_at
        last_alert_at = max(last, esc.created_at) if last else esc.created_at
        if realert_due(esc.tier, esc.status, last_alert_at, now, rt.settings):
            sent += _realert(rt, esc.id, state[esc.id].rounds + 1, now)
    if sent:
        rt.wake()
    return sent


def realert_now(rt: Runtime, escalation_id: int, after_round: int, why: str) -> int:
    """Alert the next tier at once instead of after the SLA (a call went unanswered or no one pressed 1). Keyed on
    the round that failed: two calls of one round going unanswered move one tier, not two."""
    sent = _realert(rt, escalation_id, after_round + 1, rt.clock.now(), why=why)
    if sent:
        rt.wake()
    return sent


def _queue_calls(
    rt: Runtime,
    s: Session,
    esc: Escalation,
    round_: int,
    index: int,
    contacts: list[tuple[Channel, str]],
    now: datetime,
) -> int:
    """An emergency re-alert also calls each phone number of the tier (followup/services/voice.py places them)."""
    if esc.tier != Tier.EMERGENCY or rt.caller is None or not rt.settings.voice.enabled:
        return 0
    assert esc.id is not None
    phones = list(dict.fromkeys(a for ch, a in contacts if ch == Channel.SMS))
    for to in phones:
        s.add(VoiceCall(escalation_id=esc.id, round=round_, tier_index=index, to=to, created_at=now, updated_at=now))
    return len(phones)


def _realert(rt: Runtime, escalation_id: int, round_: int, now: datetime, why: str = "sla") -> int:
    settings = rt.settings
    index = tier_index(settings, round_)
    contacts = contact_tiers(settings)[index]
    with rt.db.session() as s:
        row = EscalationAlert(
            escalation_id=escalation_id, round=round_, tier_index=index, tier="", recipients=len(contacts), at=now
        )
        s.add(row)
        try:
            s.flush()  # the write that serialises two workers: the second one stops here
        except IntegrityError:
            return 0
        esc = s.get(Escalation, escalation_id)
        if esc is None or esc.status != EscalationStatus.OPEN:
            return 0  # acknowledged in the meantime
        row.tier = esc.tier
        minutes = int((now - esc.created_at).total_seconds() // 60)
        context = {
            "escalation": {
                "id": esc.id,
                "tier": esc.tier,
                "level": esc.level,
                "criteria_labels": criteria_labels(rt, esc.criteria),
            },
            "realert": {"round": round_, "minutes": minutes},
            "escalation_url": rt.links.escalation(escalation_id),
        }
        for channel, address in contacts:
            queue(s, settings, drafts.realert(esc, round_, channel, address, context, now), now)
        calls = _queue_calls(rt, s, esc, round_, index, contacts, now)
        audit.record(
            s,
            now,
            "system",
            "escalation.realerted" if contacts else "escalation.realert_nobody",
            f"escalation:{esc.id}",
            round=round_,
            tier_index=index,
            recipients=len(contacts),
            calls=calls,
            why=why,
        )
        s.commit()
    log.info("escalation %s re-alerted (round %d, tier %d, %d contacts)", escalation_id, round_, index, len(contacts))
    return 1
