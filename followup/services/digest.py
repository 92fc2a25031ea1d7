"""The daily digest email to the clinic: new routine escalations, open ones, unreachable patients and
non-responders (the newest LISTED, their count and a link to the rest). Identifiers and links only: names and
messages stay in the dashboard.

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

from followup.core.paging import total_text
from followup.core.vocab import ACTIVE_ESCALATION, EscalationStatus, Tier
from followup.models import Escalation, Message, Patient
from followup.runtime import Runtime
from followup.services import audit, drafts, silence
from followup.services.escalation import criteria_labels
from followup.services.queue import queue
from followup.services.roster import SILENT_COUNT_CAP, unreachable_clause

log = logging.getLogger("followup.digest")
LISTED = 50  # non-responders listed by id, newest first; the rest are in the dashboard's "Not responding" list


def build_digest(rt: Runtime, s: Session, now: datetime, listed: int = LISTED) -> dict[str, Any]:
    """The digest's content for the clinic-local day of `now` (routine escalations since the last digest; the
    newest `listed` non-responders)."""
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
    open_by_status = dict(
        s.exec(
            select(Escalation.status, func.count())
            .where(col(Escalation.status).in_(ACTIVE_ESCALATION))
            .group_by(Escalation.status)
        ).all()
    )
    unreachable = s.exec(select(Patient).where(unreachable_clause()).order_by(col(Patient.id))).all()
    # The newest LISTED non-responders and their count up to SILENT_COUNT_CAP, as the dashboard's filter shows them
    # (silence.newest_silent): the whole list grew with the cohort (20,440 buffers at 300,000 patients).
    newest = silence.newest_silent(s, now, max(SILENT_COUNT_CAP + 1, listed))  # the list is the count's head
    silent_total, silent = min(len(newest), SILENT_COUNT_CAP + 1), newest[:listed]
    last_checkin = silence.last_checkins(s, silent, now)
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
        "open_count": sum(open_by_status.values()),
        "unacknowledged_count": open_by_status.get(EscalationStatus.OPEN, 0),
        "unreachable": [
            {"id": p.id, "reason": _why_unreachable(p), "url": rt.links.patient(p.id)}
            for p in unreachable
            if p.id is not None
        ],
        "non_responders": [
            {
                "id": pid,
                "last_checkin": last_checkin[pid].astimezone(tz).date().isoformat(),
                "url": rt.links.patient(pid),
            }
            for pid in silent
            if pid in last_checkin
        ],
        "non_responders_count": total_text(int(silent_total), SILENT_COUNT_CAP),
        "non_responders_url": f"{rt.links.dashboard()}/patients?status=not_responding",
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
            non_responders=digest["non_responders_count"],
        )
        try:
            s.commit()
        except IntegrityError:
            log.info("digest for %s already queued by another process", digest["date"])
            return 0
    rt.wake()
    return len(recipients)
