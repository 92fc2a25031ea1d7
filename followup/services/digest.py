"""The daily digest email to the clinic: new routine escalations, open ones, unreachable patients and
non-responders. Identifiers and links only: names and messages stay in the dashboard.

One Message per on-call address and clinic-local day (its dedupe key), so any number of processes may run the
cron job: the first commit wins and the others find the digest already queued.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from followup.core.vocab import ACTIVE_ESCALATION, EscalationStatus, Tier
from followup.models import Escalation, Message, Patient
from followup.runtime import Runtime
from followup.services import audit, drafts
from followup.services.escalation import criteria_labels
from followup.services.queue import queue
from followup.services.roster import non_responders, unreachable_clause

log = logging.getLogger("followup.digest")


def build_digest(rt: Runtime, s: Session, now: datetime) -> dict[str, Any]:
    """The digest's content for the clinic-local day of `now` (routine escalations since the last digest)."""
    tz = ZoneInfo(rt.settings.clinic.timezone)
    last = s.exec(
        select(func.max(Message.created_at)).where(
            # a clinic message (no patient, no escalation): ix_message_clinic holds these apart from the rest
            col(Message.patient_id).is_(None),
            col(Message.escalation_id).is_(None),
            Message.template == drafts.DIGEST,
        )
    ).one()
    since = last if last is not None else now - timedelta(days=1)
    new = s.exec(
        select(Escalation)
        .where(Escalation.tier == Tier.ROUTINE, Escalation.created_at > since, Escalation.created_at <= now)
        .order_by(col(Escalation.created_at))
    ).all()
    open_rows = s.exec(select(Escalation.status).where(col(Escalation.status).in_(ACTIVE_ESCALATION))).all()
    unreachable = s.exec(select(Patient).where(unreachable_clause()).order_by(col(Patient.id))).all()
    silent = non_responders(s, now)
    return {
        "date": now.astimezone(tz).date().isoformat(),
        "since": since.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "new_escalations": [
            {
                "id": e.id,
                "tier": e.tier,
                "status": e.status,
                "opened": e.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                "criteria": criteria_labels(rt, e.criteria),
                "url": rt.links.escalation(e.id),
            }
            for e in new
            if e.id is not None  # always, for a row read back: says so to mypy
        ],
        "open_count": len(open_rows),
        "unacknowledged_count": sum(1 for st in open_rows if st == EscalationStatus.OPEN),
        "unreachable": [
            {"id": p.id, "reason": _why_unreachable(p), "url": rt.links.patient(p.id)}
            for p in unreachable
            if p.id is not None
        ],
        "non_responders": [
            {
                "id": x.patient_id,
                "last_checkin": x.last_checkin_at.astimezone(tz).date().isoformat(),
                "url": rt.links.patient(x.patient_id),
            }
            for x in silent
        ],
    }


def _why_unreachable(p: Patient) -> str:
    sms = f"sms {p.sms_state.replace('_', ' ')}" if p.phone else "no phone"
    email = f"email {p.email_state.replace('_', ' ')}" if p.email else "no email"
    return f"{sms}, {email}"


def send_digest(rt: Runtime) -> int:
    """Queue today's digest to every clinic.oncall_email address; returns how many were queued (0 if done)."""
    now = rt.clock.now()
    recipients = rt.settings.clinic.oncall_email
    with rt.db.session() as s:
        digest = build_digest(rt, s, now)
        if not recipients:
            audit.record(s, now, "system", "digest.no_recipients", "", date=digest["date"])
            s.commit()
            return 0
        context = {"digest": digest, "dashboard_url": rt.links.dashboard()}
        for address in recipients:
            queue(s, rt.settings, drafts.digest(digest["date"], address, context, now), now)
        audit.record(
            s,
            now,
            "system",
            "digest.queued",
            "",
            date=digest["date"],
            new=len(digest["new_escalations"]),
            unreachable=len(digest["unreachable"]),
            non_responders=len(digest["non_responders"]),
        )
        try:
            s.commit()
        except IntegrityError:
            log.info("digest for %s already queued by another process", digest["date"])
            return 0
    rt.wake()
    return len(recipients)
