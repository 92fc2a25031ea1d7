"""A phone call for an emergency nobody acknowledged.

The re-alert job (followup/services/alerting.py) adds a `VoiceCall` row for each phone number of the tier it
re-alerts, in the same transaction as the re-alert texts; `place_queued` then places the calls through the
`Caller` (Twilio Voice). The call says an alert number, with no name and no diagnosis, and asks for 1 (TwiML
<Gather>, answered at our signed callback). Pressing 1 acknowledges the escalation (audited with the on-call tier
as the actor); any other key, no key, no answer, busy or a failed call alerts the next tier at once.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select, update

from followup import metrics
from followup.content.voice import voice_words
from followup.core.vocab import EscalationStatus
from followup.models import Escalation, VoiceCall
from followup.runtime import Runtime
from followup.services import audit
from followup.services.alerting import realert_now
from followup.services.patients import Conflict, change_escalation
from followup.transports.base import SendError
from followup.transports.twilio_voice import CallRequest

log = logging.getLogger("followup.voice")

# Twilio's final CallStatus values; "completed" with no key pressed is an unanswered alert too.
ENDED = frozenset({"completed", "no-answer", "busy", "failed", "canceled"})
INTERRUPTED_AFTER = timedelta(minutes=2)  # well past the SDK's timeout: a `calling` row this old was abandoned


@dataclass(frozen=True)
class Spoken:
    text: str
    language: str


def _language(rt: Runtime) -> str:
    return rt.settings.clinic.languages[0] if rt.settings.clinic.languages else "en"


def _words(rt: Runtime) -> dict[str, str]:
    return voice_words(rt.settings.clinic.templates, _language(rt))


def place_queued(rt: Runtime, limit: int = 20) -> int:
    """Place every queued call (after the re-alert that queued it committed). Returns the calls placed."""
    if rt.caller is None:
        return 0
    now = rt.clock.now()
    _recover_interrupted(rt, now)
    with rt.db.session() as s:
        ids = list(
            s.exec(select(VoiceCall.id).where(VoiceCall.status == "queued").order_by(col(VoiceCall.id)).limit(limit))
        )
    placed = 0
    for call_id in ids:
        assert call_id is not None
        with rt.db.session() as s:
            took = s.exec(
                update(VoiceCall)
                .where(col(VoiceCall.id) == call_id, col(VoiceCall.status) == "queued")
                .values(status="calling", updated_at=now)
            )
            s.commit()
            if not took.rowcount:
                continue  # another process took it
            call = s.get(VoiceCall, call_id)
            assert call is not None
            esc = s.get(Escalation, call.escalation_id)
        if esc is None or esc.status != EscalationStatus.OPEN:
            _settle(rt, call_id, "calling", "cancelled", reason="acknowledged before the call")
            continue
        placed += _place(rt, call, esc)
    return placed


def _recover_interrupted(rt: Runtime, now: datetime) -> None:
    """A process that died between taking a call and recording it left it `calling`: the call may or may not
    have rung. Safe side: count it failed and alert the next tier (more alerts, never fewer)."""
    stale = now - INTERRUPTED_AFTER
    with rt.db.session() as s:
        rows = list(s.exec(select(VoiceCall).where(VoiceCall.status == "calling", VoiceCall.updated_at < stale)))
    for call in rows:
        assert call.id is not None
        if _settle(rt, call.id, "calling", "failed", reason="interrupted while calling"):
            _next_tier(rt, call, "call interrupted")


def _place(rt: Runtime, call: VoiceCall, esc: Escalation) -> int:
    assert call.id is not None and esc.id is not None and rt.caller is not None
    words = _words(rt)
    fields = {"clinic": rt.settings.clinic.name, "alert": esc.id}
    req = CallRequest(
        call_id=call.id,
        to=call.to,
        say=words["alert"].format(**fields),
        no_key=words["no_key"].format(**fields),
        language=_language(rt),
        gather_action=rt.links.voice("gather", call.id),
        status_callback=rt.links.voice("status", call.id),
        gather_timeout=rt.settings.voice.gather_timeout_seconds,
    )
    try:
        sid = rt.caller.call(req)
    except SendError as exc:
        metrics.VOICE_CALLS.labels("failed").inc()
        log.warning("voice call %s for escalation %s failed: %s", call.id, esc.id, exc.reason)
        _settle(rt, call.id, "calling", "failed", reason=exc.reason)
        realert_now(rt, esc.id, call.round, why="call failed")
        place_queued(rt)
        return 0
    now = rt.clock.now()
    with rt.db.session() as s:
        s.exec(
            update(VoiceCall)
            .where(col(VoiceCall.id) == call.id)
            .values(status="placed", provider_id=sid, placed_at=now, updated_at=now)
        )
        audit.record(s, now, "system", "voice.call_placed", f"escalation:{esc.id}", call=call.id, tier=call.tier_index)
        s.commit()
    metrics.VOICE_CALLS.labels("placed").inc()
    log.info("voice call %s placed for escalation %s (tier %d)", call.id, esc.id, call.tier_index)
    return 1


def _settle(rt: Runtime, call_id: int, from_status: str, to_status: str, **values: object) -> bool:
    """Move a call from one state to the next, once (Twilio may post a callback twice)."""
    now = rt.clock.now()
    with rt.db.session() as s:
        took = s.exec(
            update(VoiceCall)
            .where(col(VoiceCall.id) == call_id, col(VoiceCall.status) == from_status)
            .values(status=to_status, ended_at=now, updated_at=now, **values)
        )
        s.commit()
    return bool(took.rowcount)


def key_pressed(rt: Runtime, call_id: int, digits: str) -> Spoken:
    """The <Gather> callback: 1 acknowledges the escalation; anything else alerts the next tier now."""
    words = _words(rt)
    with rt.db.session() as s:
        call = s.get(VoiceCall, call_id)
    if call is None:
        return Spoken(words["closed"], _language(rt))
    fields = {"clinic": rt.settings.clinic.name, "alert": call.escalation_id}
    if call.status != "placed":  # a repeated callback: answer as the first time did
        key = "acknowledged" if call.status == "acknowledged" else "declined"
        return Spoken(words[key].format(**fields), _language(rt))
    if digits.strip() == "1":
        actor = f"oncall:tier{call.tier_index}"
        # Someone may have acknowledged it on the dashboard meanwhile (Conflict): the call still ends well.
        with contextlib.suppress(Conflict):
            change_escalation(rt, call.escalation_id, "acknowledge", actor)
        if _settle(rt, call_id, "placed", "acknowledged", digits="1"):
            audit.note(rt, actor, "voice.acknowledged", f"escalation:{call.escalation_id}", call=call_id)
            metrics.VOICE_CALLS.labels("acknowledged").inc()
        return Spoken(words["acknowledged"].format(**fields), _language(rt))
    if _settle(rt, call_id, "placed", "declined", digits=digits[:4]):
        metrics.VOICE_CALLS.labels("declined").inc()
        _next_tier(rt, call, "no acknowledgement on the call")
    return Spoken(words["declined"].format(**fields), _language(rt))


def call_ended(rt: Runtime, call_id: int, call_status: str) -> bool:
    """The call's status callback: ended while still waiting for a key (no answer, busy, failed, or answered
    and hung up) alerts the next tier now. Returns whether it did."""
    if call_status not in ENDED:
        return False
    with rt.db.session() as s:
        call = s.get(VoiceCall, call_id)
    if call is None or not _settle(rt, call_id, "placed", "no_answer", reason=call_status):
        return False
    metrics.VOICE_CALLS.labels("no_answer").inc()
    _next_tier(rt, call, f"call {call_status}")
    return True


def _next_tier(rt: Runtime, call: VoiceCall, why: str) -> None:
    audit.note(rt, "system", "voice.not_acknowledged", f"escalation:{call.escalation_id}", call=call.id, why=why)
    if realert_now(rt, call.escalation_id, call.round, why=why):
        place_queued(rt)


def calls_for(rt: Runtime, escalation_id: int) -> list[VoiceCall]:
    with rt.db.session() as s:
        stmt = select(VoiceCall).where(VoiceCall.escalation_id == escalation_id).order_by(col(VoiceCall.id))
        return list(s.exec(stmt).all())
