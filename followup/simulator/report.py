"""The simulation's summary and its invariants, each of which must be zero:

- quiet_hour_violations: a program message (welcome, tip, check-in, closing) sent outside the patient's local
  sending window, as the provider saw it at the moment of sending;
- duplicate_sends: a message id accepted twice by the provider, or one patient sent the same step twice;
- missed_escalations: a red-flag reply that is in no escalation;
- lost_messages: a message due by the end that is neither sent nor closed with a reason (expired, cancelled,
  failed), or a closed one with no reason recorded.

Read from the database in chunks and from the provider's byte-per-message oracle: memory stays flat with the
cohort.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlmodel import col, select

from followup.core.vocab import OPEN_STATES, Level, MessageState
from followup.models import Escalation, Inbound, Message
from followup.runtime import Runtime

if TYPE_CHECKING:
    from followup.simulator.config import SimConfig
    from followup.simulator.provider import SimProvider

INVARIANTS = ("quiet_hour_violations", "duplicate_sends", "missed_escalations", "lost_messages")
CHUNK = 5000


def summarise(
    rt: Runtime, provider: SimProvider, cfg: SimConfig, end: datetime, stats: dict[str, int]
) -> dict[str, Any]:
    o = provider.oracle
    by_channel: dict[str, dict[str, int]] = {}
    for (channel, kind), n in sorted(o.by_kind.items()):
        by_channel.setdefault(channel, {})[kind] = n
    duplicate_steps = _duplicate_steps(rt, o.accepted)
    missed, red_flag_replies = _missed_escalations(rt)
    lost, by_status, reasons = _lost(rt, end)
    tiers, sources, criteria, benign_escalated, benign_criteria = _escalations(rt)
    summary: dict[str, Any] = {
        "patients": cfg.patients,
        "days": cfg.days,
        "seed": cfg.seed,
        "start": cfg.start.isoformat(),
        "end": end.isoformat(),
        "enrolled": stats["enrolled"],
        "messages_sent": sum(1 for n in o.accepted if n),
        "messages_by_channel_and_kind": by_channel,
        "message_status": by_status,
        "closed_reasons": reasons,
        "escalations": sum(tiers.values()),
        "escalations_by_tier": tiers,
        "escalations_by_source": sources,
        "escalation_criteria": criteria,
        # Replies from the benign list that the detector escalated: mostly `persisting` (twitching for 4 weeks or
        # more is a routine referral in clinic/red_flags.toml), so expected, and shown for the clinic to judge.
        "benign_replies_escalated": benign_escalated,
        "benign_replies_escalated_by_criterion": benign_criteria,
        "criteria_labels": criteria_labels(rt, set(criteria) | set(benign_criteria)),
        "replies": dict(provider.replies),
        "red_flag_replies": red_flag_replies,
        "webhooks": {
            "twilio_callbacks": stats["twilio_callbacks"],
            "sendgrid_events": stats["sendgrid_events"],
            "duplicate_inbound": stats["duplicate_inbound"],
            "reordered_status_pairs": provider.webhooks["reordered"],
        },
        "provider_faults": dict(o.faults),
        "ticks": stats["ticks"],
        "quiet_hour_violations": o.quiet_hour_violations,
        "duplicate_sends": o.duplicate_ids + duplicate_steps,
        "missed_escalations": missed,
        "lost_messages": lost,
        "examples": list(o.examples),
    }
    summary["ok"] = all(summary[k] == 0 for k in INVARIANTS)
    return summary


def _duplicate_steps(rt: Runtime, accepted: bytearray) -> int:
    """Patients sent one program step more than once (under different message ids)."""
    seen: Counter[tuple[int, str]] = Counter()
    dupes = 0
    last_patient = None
    for mid, pid, step in _stream(
        rt,
        select(Message.id, Message.patient_id, Message.step_id)
        .where(col(Message.step_id).is_not(None))
        .order_by(col(Message.patient_id)),
    ):
        if pid != last_patient:
            seen.clear()
            last_patient = pid
        if mid < len(accepted) and accepted[mid]:
            seen[(pid, step)] += 1
            dupes += seen[(pid, step)] == 2
    return dupes


def _missed_escalations(rt: Runtime) -> tuple[int, int]:
    """Red-flag replies (labelled `rf` in their provider key) that no escalation holds."""
    held: set[int] = set()
    for ids in _stream(rt, select(Escalation.inbound_ids)):
        held.update(int(i) for i in ids or [])
    missed = total = 0
    for inbound_id, key in _stream(rt, select(Inbound.id, Inbound.provider_key)):
        if _label(key) == "rf":
            total += 1
            missed += inbound_id not in held
    return missed, total


def _lost(rt: Runtime, end: datetime) -> tuple[int, dict[str, int], dict[str, int]]:
    with rt.db.session() as s:
        by_status = dict(s.exec(select(Message.status, func.count()).group_by(Message.status)).all())
        open_due = s.exec(
            select(func.count()).select_from(Message).where(col(Message.status).in_(OPEN_STATES), Message.due_at <= end)
        ).one()
        unexplained = s.exec(
            select(func.count())
            .select_from(Message)
            .where(
                col(Message.status).in_((MessageState.EXPIRED, MessageState.CANCELLED, MessageState.FAILED)),
                col(Message.reason).is_(None),
                col(Message.error_code).is_(None),
            )
        ).one()
        reasons = s.exec(
            select(Message.status, Message.reason, func.count())
            .where(col(Message.status).in_((MessageState.EXPIRED, MessageState.CANCELLED, MessageState.FAILED)))
            .group_by(col(Message.status), col(Message.reason))
            .order_by(func.count().desc())
            .limit(8)
        ).all()
    top = {f"{status}: {_generic(reason)}": int(n) for status, reason, n in reasons}
    return int(open_due) + int(unexplained), {k: int(v) for k, v in by_status.items()}, top


def _escalations(rt: Runtime) -> tuple[dict[str, int], dict[str, int], dict[str, int], int, dict[str, int]]:
    with rt.db.session() as s:
        tiers = dict(s.exec(select(Escalation.tier, func.count()).group_by(Escalation.tier)).all())
        sources = dict(s.exec(select(Escalation.source, func.count()).group_by(Escalation.source)).all())
    criteria: Counter[str] = Counter()
    for found in _stream(rt, select(Escalation.criteria)):
        criteria.update(found or [])
    benign: set[int] = set()
    benign_criteria: Counter[str] = Counter()
    for inbound_id, key, verdict in _stream(
        rt,
        select(Inbound.id, Inbound.provider_key, Inbound.verdict).where(
            col(Inbound.level).in_((Level.RED_FLAG, Level.EMERGENCY))
        ),
    ):
        if _label(key) == "ok" and inbound_id not in benign:
            benign.add(inbound_id)
            benign_criteria.update((verdict or {}).get("criteria") or ["(none recorded)"])
    return (
        {k: int(v) for k, v in tiers.items()},
        {k: int(v) for k, v in sources.items()},
        dict(criteria.most_common()),
        len(benign),
        dict(benign_criteria.most_common()),
    )


def criteria_labels(rt: Runtime, ids: Any) -> dict[str, str]:
    """Clinician labels of red-flag criteria, for the text summary (ids where the file has none)."""
    known = rt.detector.criteria
    return {c: str(getattr(known.get(c), "clinician_label", c)) for c in ids}


def _label(provider_key: str) -> str:
    """The simulator's label in a reply's provider key: ok (benign), rf (red flag), st (stop)."""
    if provider_key.startswith("twilio:SM"):
        return provider_key[9:11]
    if provider_key.startswith("email:<"):
        return provider_key[7:9]
    return ""


def _generic(reason: str | None) -> str:
    """A reason without its numbers, so that reasons group ("30.2 h late" and "31.0 h late" are one)."""
    if reason is None:
        return "(none)"
    return " ".join("N" if any(c.isdigit() for c in w) else w for w in reason.split())


def _stream(rt: Runtime, stmt: Any) -> Any:
    with rt.db.session() as s:
        result = s.exec(stmt.execution_options(yield_per=CHUNK))
        yield from result
