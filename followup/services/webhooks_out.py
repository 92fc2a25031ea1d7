"""Signed outbound webhooks: a transactional outbox and its delivery.

`emit` adds one `WebhookDelivery` row per subscribed endpoint to the caller's transaction, so an event exists
exactly when the change it announces was committed (a rolled-back change announces nothing). The `webhooks` job
(followup/jobs.py) calls `deliver_due`: it claims due rows under a lease, posts each with Standard Webhooks
headers, and records the answer. A 2xx ends it; anything else is retried with exponential back-off until
`webhooks.max_attempts`, then marked failed (shown on the dashboard's delivery log, where an admin can send it
again). A process that dies mid-post leaves the row `sending`; once the lease has run out another pass sends it
again with the same event id: delivery is at least once, and receivers drop repeats by `webhook-id`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, delete, func, or_, select, update

from followup import metrics
from followup.core import webhooks as wh
from followup.models import Escalation, WebhookDelivery
from followup.runtime import Runtime
from followup.services import audit
from followup.transports.webhook_http import PostFailed

log = logging.getLogger("followup.webhooks_out")

PENDING, SENDING, DELIVERED, FAILED = "pending", "sending", "delivered", "failed"


class NoSuchDelivery(Exception):
    pass


def emit(
    rt: Runtime,
    s: Session,
    event_type: str,
    now: datetime,
    data: dict[str, Any],
    health: Callable[[], dict[str, Any]] | None = None,
    *,
    patient_id: int | None = None,
) -> str | None:
    """Queue `event_type` for every endpoint subscribed to it, in the caller's transaction (never commits).
    `health` builds the clinical fields, asked for only when a trusted endpoint is subscribed. Returns the event
    id, or None when no endpoint wants the event."""
    endpoints = [e for e in rt.settings.webhooks.endpoints if event_type in e.events]
    if not endpoints:
        return None
    event_id = f"evt_{uuid.uuid4().hex}"
    full = {**data, **(health() if health and any(e.trusted for e in endpoints) else {})}
    for e in endpoints:
        s.add(
            WebhookDelivery(
                event_id=event_id,
                event_type=event_type,
                endpoint=e.name,
                patient_id=patient_id,
                body=wh.payload(event_id, event_type, now, full, e.trusted),
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
        )
    return event_id


def escalation_data(rt: Runtime, esc: Escalation, **extra: Any) -> dict[str, Any]:
    """What any endpoint may know about an escalation: that it exists, its state and where to look."""
    assert esc.id is not None
    return {
        "escalation_id": esc.id,
        "patient_id": esc.patient_id,
        "status": esc.status,
        "source": esc.source,
        "opened_at": esc.created_at.isoformat(),
        "url": rt.links.escalation(esc.id),
        **extra,
    }


def escalation_health(rt: Runtime, esc: Escalation) -> Callable[[], dict[str, Any]]:
    """The clinical fields, for trusted endpoints only: tier, level, criteria and the words that matched."""

    def build() -> dict[str, Any]:
        try:
            known = rt.detector.criteria
            labels = [str(getattr(known.get(c), "clinician_label", c)) for c in esc.criteria]
        except Exception:  # labels are a courtesy; the ids are there
            labels = list(esc.criteria)
        return {
            "tier": esc.tier,
            "level": esc.level,
            "criteria": list(esc.criteria),
            "criteria_labels": labels,
            "evidence": [str(e.get("text", "")) for e in esc.evidence][:10],
        }

    return build


# ---- delivery ---------------------------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0


def deliver_due(rt: Runtime) -> DeliveryReport:
    """One pass of the `webhooks` job: claim what is due, post each, record each answer."""
    report = DeliveryReport()
    if not rt.settings.webhooks.endpoints and not _any_waiting(rt):
        return report
    ids = _claim(rt)
    report.claimed = len(ids)
    for delivery_id in ids:
        outcome = _attempt(rt, delivery_id)
        if outcome == DELIVERED:
            report.delivered += 1
        elif outcome == FAILED:
            report.failed += 1
        elif outcome == PENDING:
            report.retried += 1
    return report


def _any_waiting(rt: Runtime) -> bool:
    with rt.db.session() as s:
        stmt = select(WebhookDelivery.id).where(col(WebhookDelivery.status).in_([PENDING, SENDING])).limit(1)
        return s.exec(stmt).first() is not None


def _claim(rt: Runtime) -> list[int]:
    """Due rows (pending and due, or sending with a lease run out), taken atomically: FOR UPDATE SKIP LOCKED on
    PostgreSQL, the conditional UPDATE on SQLite's single writer."""
    now = rt.clock.now()
    cfg = rt.settings.webhooks
    due_now = or_(
        (col(WebhookDelivery.status) == PENDING) & (col(WebhookDelivery.next_attempt_at) <= now),
        (col(WebhookDelivery.status) == SENDING) & (col(WebhookDelivery.lease_until) < now),
    )
    due = (
        select(WebhookDelivery.id)
        .where(due_now)
        .order_by(col(WebhookDelivery.id))
        .limit(cfg.batch_size)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(WebhookDelivery)
        .where(col(WebhookDelivery.id).in_(due.scalar_subquery()), due_now)
        .values(
            status=SENDING,
            lease_until=now + timedelta(seconds=cfg.lease_seconds),
            attempts=col(WebhookDelivery.attempts) + 1,
            updated_at=now,
        )
        .returning(col(WebhookDelivery.id))
        .execution_options(synchronize_session=False)
    )
    with rt.db.session() as s:
        ids = [row[0] for row in s.exec(stmt)]
        s.commit()
    return sorted(ids)


def _attempt(rt: Runtime, delivery_id: int) -> str:
    cfg = rt.settings.webhooks
    endpoints = {e.name: e for e in cfg.endpoints}
    with rt.db.session() as s:
        row = s.get(WebhookDelivery, delivery_id)
        assert row is not None
        event_id, body, name, attempts = row.event_id, row.body, row.endpoint, row.attempts
    endpoint = endpoints.get(name)
    status: int | None = None
    error: str | None = None
    latency_ms: int | None = None
    if endpoint is None:
        error = "endpoint no longer configured"
    else:
        # The signature's timestamp is the wall clock of this request (receivers check it against theirs).
        headers = wh.headers(endpoint.secret, event_id, int(time.time()), body)
        started = time.perf_counter()
        try:
            status = rt.webhook_poster.post(endpoint.url, body.encode(), headers)
        except PostFailed as exc:
            error = f"no answer: {exc}"
        except Exception as exc:  # a poster bug must not stop the pass; the row is retried
            log.exception("webhook delivery %s: poster raised unexpectedly", delivery_id)
            error = f"unexpected {type(exc).__name__}"
        elapsed = time.perf_counter() - started
        latency_ms = int(elapsed * 1000)
        metrics.WEBHOOK_OUT_SECONDS.labels(name).observe(elapsed)
    ok = status is not None and 200 <= status < 300
    now = rt.clock.now()
    if ok:
        outcome = DELIVERED
    elif endpoint is None or (status is not None and not wh.retryable_status(status)) or attempts >= cfg.max_attempts:
        outcome = FAILED
    else:
        outcome = PENDING
    values: dict[str, Any] = {
        "status": outcome,
        "last_status": status,
        "last_error": error if not ok else None,
        "last_latency_ms": latency_ms,
        "lease_until": None,
        "updated_at": now,
    }
    if ok:
        values["delivered_at"] = now
    elif outcome == PENDING:
        wait = wh.backoff_seconds(attempts, cfg.backoff_base_seconds, cfg.backoff_max_seconds)
        values["next_attempt_at"] = now + timedelta(seconds=wait)
    with rt.db.session() as s:
        # Only the claim this pass holds is settled: a row re-claimed by another process after a lease ran out
        # (a very slow receiver) keeps that process's outcome.
        s.exec(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == delivery_id,
                col(WebhookDelivery.status) == SENDING,
                col(WebhookDelivery.attempts) == attempts,
            )
            .values(**values)
        )
        s.commit()
    metrics.WEBHOOKS_OUT.labels(name, outcome).inc()
    log.info("webhook delivery %s (%s) attempt %d: %s %s", delivery_id, name, attempts, outcome, status or error)
    return outcome


# ---- the delivery log -------------------------------------------------------------------------------------------


def log_page(rt: Runtime, limit: int, offset: int, status: str | None = None) -> list[WebhookDelivery]:
    with rt.db.session() as s:
        stmt = select(WebhookDelivery)
        if status:
            stmt = stmt.where(WebhookDelivery.status == status)
        return list(s.exec(stmt.order_by(col(WebhookDelivery.id).desc()).limit(limit).offset(offset)).all())


def counts(rt: Runtime) -> dict[str, int]:
    with rt.db.session() as s:
        rows = s.exec(select(WebhookDelivery.status, func.count()).group_by(col(WebhookDelivery.status))).all()
    return {status: int(n) for status, n in rows}


def forget_old(rt: Runtime) -> int:
    """Delete deliveries finished (delivered or failed) more than `privacy.retention_days` ago: a trusted
    endpoint's copy holds the words of a reply, kept no longer than the reply itself. Returns rows deleted."""
    days = rt.settings.privacy.retention_days
    if days == 0:
        return 0
    cutoff = rt.clock.now() - timedelta(days=days)
    with rt.db.session() as s:
        gone = s.exec(
            delete(WebhookDelivery).where(
                col(WebhookDelivery.status).in_([DELIVERED, FAILED]), col(WebhookDelivery.created_at) < cutoff
            )
        ).rowcount
        s.commit()
    return int(gone or 0)


def send_again(rt: Runtime, delivery_id: int, actor: str) -> None:
    """An admin puts a failed delivery back in the queue (same event id), audited."""
    now = rt.clock.now()
    with rt.db.session() as s:
        row = s.get(WebhookDelivery, delivery_id)
        if row is None:
            raise NoSuchDelivery(f"webhook delivery {delivery_id}")
        if row.status != FAILED:
            return
        row.status, row.attempts, row.next_attempt_at, row.updated_at = PENDING, 0, now, now
        audit.record(s, now, actor, "webhook.resent", f"webhook:{delivery_id}", endpoint=row.endpoint)
        s.commit()
