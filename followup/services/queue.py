"""Adding outbound messages to the schedule (no commit: the calling service commits)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from followup.models import Message
from followup.settings import Settings


def ttl_for(settings: Settings, kind: str, urgent: bool) -> timedelta:
    sch = settings.schedule
    if urgent:
        return sch.ttl_urgent
    return {
        "welcome": sch.ttl_welcome,
        "tip": sch.ttl_tip,
        "checkin": sch.ttl_checkin,
        "closing": sch.ttl_closing,
    }.get(kind, sch.ttl_tip)


def queue(
    s: Session,
    settings: Settings,
    *,
    now: datetime,
    dedupe_key: str,
    channel: str,
    kind: str,
    template: str,
    due_at: datetime,
    patient_id: int | None = None,
    to: str | None = None,
    urgent: bool = False,
    step_id: str | None = None,
    question_id: str | None = None,
    escalation_id: int | None = None,
    context: dict[str, Any] | None = None,
) -> Message:
    msg = Message(
        patient_id=patient_id,
        escalation_id=escalation_id,
        dedupe_key=dedupe_key,
        channel=channel,
        to=to,
        kind=kind,
        step_id=step_id,
        template=template,
        question_id=question_id,
        context=context or {},
        urgent=urgent,
        due_at=due_at,
        expires_at=due_at + ttl_for(settings, kind, urgent),
        created_at=now,
        updated_at=now,
    )
    s.add(msg)
    return msg
