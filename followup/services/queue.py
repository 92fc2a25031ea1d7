"""Adding outbound messages to the schedule (no commit: the calling service commits)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from followup.core.vocab import MessageKind
from followup.models import Message
from followup.services.drafts import Draft
from followup.settings import Settings


def ttl_for(settings: Settings, kind: str, urgent: bool) -> timedelta:
    """How long a message may wait to be sent: urgent ones briefly, program steps by their kind, others as tips."""
    sch = settings.schedule
    if urgent:
        return sch.ttl_urgent
    by_kind: dict[str, timedelta] = {
        MessageKind.WELCOME: sch.ttl_welcome,
        MessageKind.TIP: sch.ttl_tip,
        MessageKind.CHECKIN: sch.ttl_checkin,
        MessageKind.CLOSING: sch.ttl_closing,
    }
    return by_kind.get(kind, sch.ttl_tip)


def queue(s: Session, settings: Settings, draft: Draft, now: datetime) -> Message:
    """Add the draft as a scheduled message, due at `draft.due_at` and expiring one TTL later."""
    msg = Message(**message_values(settings, draft, now))
    s.add(msg)
    return msg


def message_values(settings: Settings, draft: Draft, now: datetime) -> dict[str, Any]:
    """The columns of the scheduled message a draft becomes (what `queue` adds, and a bulk insert writes)."""
    return dict(
        patient_id=draft.patient_id,
        escalation_id=draft.escalation_id,
        dedupe_key=draft.dedupe_key,
        channel=draft.channel,
        to=draft.to,
        kind=draft.kind,
        step_id=draft.step_id,
        template=draft.template,
        question_id=draft.question_id,
        context=draft.context,
        urgent=draft.urgent,
        due_at=draft.due_at,
        expires_at=draft.due_at + ttl_for(settings, draft.kind, draft.urgent),
        created_at=now,
        updated_at=now,
    )
