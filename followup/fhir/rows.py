"""What the mappers read from a row: the attributes of the tables in `followup.models`, named here so this package
needs no database import (a table row, or any object with these attributes, will do)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol


class PatientRow(Protocol):
    id: int | None
    name: str
    phone: str | None
    email: str | None
    channel: str
    timezone: str
    language: str
    status: str
    updated_at: datetime


class TriageRow(Protocol):
    id: int | None
    patient_id: int
    answers: dict[str, Any]
    red_flags: list[str]
    disposition: str
    created_at: datetime


class MessageRow(Protocol):
    id: int | None
    patient_id: int | None
    escalation_id: int | None
    channel: str
    to: str | None
    kind: str
    status: str
    subject: str | None
    body: str | None
    reason: str | None
    due_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    updated_at: datetime


class InboundRow(Protocol):
    id: int | None
    channel: str
    patient_id: int | None
    body: str
    subject: str | None
    status: str
    level: str | None
    received_at: datetime
    processed_at: datetime | None


class EscalationRow(Protocol):
    id: int | None
    patient_id: int
    level: str
    tier: str
    status: str
    source: str
    criteria: list[str]
    evidence: list[dict[str, Any]]
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    booked_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None
    note: str | None
    created_at: datetime
    updated_at: datetime


class AppointmentRow(Protocol):
    id: int | None
    escalation_id: int
    patient_id: int
    starts_at: datetime
    ends_at: datetime
    status: str
    created_at: datetime
    updated_at: datetime


def utc(at: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored one is UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def instant(at: datetime) -> str:
    return utc(at).isoformat().replace("+00:00", "Z")
