"""Operations: worker heartbeats, readiness, and the database's figures for /metrics.

Every process running the scheduler writes a heartbeat row after each dispatcher pass; /readyz is ready when the
database answers and some dispatcher finished a pass within `metrics.ready_max_age_seconds`. The figures are
indexed counts (message state and channel, the due index, escalation and reply status), cheap at scrape time.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, delete, func, select

from followup.core.vocab import ABOVE_ROUTINE, EscalationStatus, MessageState
from followup.metrics import DbFigures
from followup.models import Escalation, Inbound, Message, WebhookDelivery, WorkerHeartbeat
from followup.runtime import Runtime
from followup.services.alerting import ack_clock, alert_state
from followup.services.health import database_reachable

FORGET_AFTER = timedelta(days=7)  # heartbeats of processes gone this long are deleted


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def heartbeat(rt: Runtime, worker: str, started_at: datetime, claimed: int, sent: int) -> None:
    """Record one finished dispatcher pass of this process."""
    now = rt.clock.now()
    with rt.db.session() as s:
        row = s.get(WorkerHeartbeat, worker)
        if row is None:
            host, pid = socket.gethostname(), os.getpid()
            row = WorkerHeartbeat(worker=worker, host=host, pid=pid, started_at=started_at, last_pass_at=now)
            s.add(row)
            s.exec(delete(WorkerHeartbeat).where(col(WorkerHeartbeat.last_pass_at) < now - FORGET_AFTER))
        row.last_pass_at, row.passes = now, row.passes + 1
        row.last_claimed, row.last_sent = claimed, sent
        s.commit()


def workers(rt: Runtime) -> list[WorkerHeartbeat]:
    with rt.db.session() as s:
        return list(s.exec(select(WorkerHeartbeat).order_by(col(WorkerHeartbeat.last_pass_at).desc())).all())


def last_pass_age(rt: Runtime) -> float | None:
    """Seconds since any dispatcher finished a pass; None if none ever did."""
    with rt.db.session() as s:
        last = s.exec(select(func.max(WorkerHeartbeat.last_pass_at))).one()
    if last is None:
        return None
    return max(0.0, (rt.clock.now() - _aware(last)).total_seconds())


@dataclass(frozen=True)
class Readiness:
    ready: bool
    database: str  # ok | unreachable
    dispatcher: str  # ok | stale | never
    last_pass_age_seconds: float | None


def readiness(rt: Runtime) -> Readiness:
    if not database_reachable(rt):
        return Readiness(False, "unreachable", "unknown", None)
    age = last_pass_age(rt)
    if age is None:
        return Readiness(False, "ok", "never", None)
    fresh = age <= rt.settings.metrics.ready_max_age_seconds
    return Readiness(fresh, "ok", "ok" if fresh else "stale", round(age, 1))


class FigureCache:
    """The last figures, reused for `max_age` seconds: several scrapers (an HA Prometheus pair) cost one count."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._lock = threading.Lock()
        self._at = -math.inf
        self._value: DbFigures | None = None

    def get(self, rt: Runtime) -> DbFigures:
        with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.max_age:
                self._value, self._at = figures(rt), time.monotonic()
            return self._value


def figures(rt: Runtime) -> DbFigures:
    now = rt.clock.now()
    with rt.db.session() as s:
        by_state = s.exec(
            select(Message.status, Message.channel, func.count()).group_by(col(Message.status), col(Message.channel))
        ).all()
        backlog, oldest = s.exec(
            select(func.count(), func.min(Message.due_at)).where(
                Message.status == MessageState.SCHEDULED, Message.due_at <= now
            )
        ).one()
        waiting = s.exec(
            select(func.count()).select_from(Inbound).where(col(Inbound.status).in_(["received", "processing"]))
        ).one()
        open_ = list(
            s.exec(
                select(Escalation).where(
                    Escalation.status == EscalationStatus.OPEN, col(Escalation.tier).in_(ABOVE_ROUTINE)
                )
            ).all()
        )
        routine_open = s.exec(
            select(func.count())
            .select_from(Escalation)
            .where(Escalation.status == EscalationStatus.OPEN, col(Escalation.tier).not_in(ABOVE_ROUTINE))
        ).one()
        hooks = dict(
            s.exec(
                select(WebhookDelivery.status, func.count())
                .where(col(WebhookDelivery.status).in_(["pending", "sending", "failed"]))
                .group_by(col(WebhookDelivery.status))
            ).all()
        )
    tiers: dict[str, int] = {t: 0 for t in (*ABOVE_ROUTINE, "routine")}
    breaches: dict[str, int] = {t: 0 for t in ABOVE_ROUTINE}
    states = alert_state(rt, open_)
    for esc in open_:
        assert esc.id is not None
        tiers[esc.tier] = tiers.get(esc.tier, 0) + 1
        if ack_clock(rt.settings, esc, states[esc.id], now).overdue:
            breaches[esc.tier] = breaches.get(esc.tier, 0) + 1
    tiers["routine"] = int(routine_open)
    return DbFigures(
        messages={(str(st), str(ch)): int(n) for st, ch, n in by_state},
        backlog=int(backlog),
        backlog_age_seconds=max(0.0, (now - _aware(oldest)).total_seconds()) if oldest else 0.0,
        replies_waiting=int(waiting),
        open_escalations=tiers,
        ack_breaches=breaches,
        webhooks_pending=int(hooks.get("pending", 0)) + int(hooks.get("sending", 0)),
        webhooks_failed=int(hooks.get("failed", 0)),
        dispatcher_age_seconds=last_pass_age(rt),
    )


def _aware(dt: datetime) -> datetime:
    from datetime import UTC

    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
