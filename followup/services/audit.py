"""The audit log: who did what to which record. Adds rows; the calling service commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from followup.models import AuditLog


def record(s: Session, at: datetime, actor: str, action: str, subject: str = "", **detail: Any) -> None:
    """Never put a phone number, email address or message text in `detail`."""
    s.add(AuditLog(at=at, actor=actor, action=action, subject=subject, detail=detail))
