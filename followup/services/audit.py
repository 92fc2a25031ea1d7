"""The audit log: who did what to which record.

`record` adds a row to the caller's transaction (the calling service commits); `note` is the service call for
an event that stands alone (a page viewed, a link opened, a flood started) and commits it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from followup.models import AuditLog
from followup.runtime import Runtime


def record(s: Session, at: datetime, actor: str, action: str, subject: str = "", **detail: Any) -> None:
    """Never put a phone number, email address or message text in `detail`. A row about a patient has as its
    `subject` the patient or one of their rows (escalation, message, reply): export and erase find the patient's
    audit rows by subject alone (services/privacy.py), not by what `detail` says."""
    s.add(AuditLog(at=at, actor=actor, action=action, subject=subject, detail=detail))


def note(rt: Runtime, actor: str, action: str, subject: str = "", **detail: Any) -> None:
    """Record one event on its own, now, and commit it. Same rule: no contact details or message text."""
    with rt.db.session() as s:
        record(s, rt.clock.now(), actor, action, subject, **detail)
        s.commit()
