"""Replies: store each one once, read it for red flags first, then keywords, and act.

Order matters for safety: red-flag detection runs before any keyword, so "STOP worrying, I'm choking when I
eat" escalates and "Help, I can't breathe" is an emergency, not a HELP request. The webhook only stores the reply
(`store`) and answers; a reply worker (`work`, woken at once: followup/jobs.py) claims it and acts. Everything sent
back goes through the dispatcher (woken after the commit), so it is tracked like any message.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, or_, text, update
from sqlmodel import Session, SQLModel, col, func, select

from followup import metrics
from followup.core.keywords import Keywords
from followup.core.replies import Reply, storable_reply
from followup.core.sms import MAX_SEGMENTS, segments
from followup.core.vocab import WENT_OUT, Channel, Level, Tier, Trend
from followup.db import insert_new
from followup.models import Inbound, Message, Patient
from followup.runtime import Runtime
from followup.services import audit, confirmation, drafts
from followup.services.context import clinic_context
from followup.services.escalation import escalate
from followup.services.queue import queue
from followup.services.reachability import set_channel_state
from followup.services.silence import replied

log = logging.getLogger("followup.inbound")
NOTIFY_CHANNEL = "followup_inbound"  # PostgreSQL NOTIFY sent with each stored reply; reply workers LISTEN
QUESTION_FRESH = timedelta(days=7)
ACK_EVERY = timedelta(hours=24)
MAX_BODY_CHARS = 20_000
TREND = [
    (Trend.WORSE, re.compile(r"\b(worse|peor)\b", re.I)),
    (Trend.BETTER, re.compile(r"\b(better|mejor)\b", re.I)),
    (Trend.SAME, re.compile(r"\b(same|igual|no change)\b", re.I)),
]


@dataclass(frozen=True)
class Received:
    inbound_id: int | None  # None: a duplicate delivery, nothing done
    duplicate: bool
    intent: str | None = None
    level: str | None = None
    escalation_id: int | None = None


@dataclass(frozen=True)
class Stored:
    inbound_id: int | None  # None: a duplicate delivery, nothing stored
    duplicate: bool
    unknown_sender: bool = False  # an SMS from a number no patient has (the webhook answers who we are)


def store(rt: Runtime, reply: Reply) -> Stored:
    """What a webhook does before answering: store the reply once, in one statement (a retried webhook inserts
    nothing), and on PostgreSQL notify the reply workers in the same transaction. Acting on it is left to a worker
    (`work` / `act_on`); until one does, the reply stays `received`, and nothing is lost if the process dies."""
    reply = storable_reply(reply)
    now = rt.clock.now()
    unknown = False
    with rt.db.session() as s:
        inbound_id = _insert_once(s, reply, reply.body[:MAX_BODY_CHARS], now)
        if inbound_id is not None and s.get_bind().dialect.name == "postgresql":
            s.connection().execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
        if inbound_id is not None and reply.channel == Channel.SMS:  # read only, in the same round of the session
            unknown = s.exec(_BY_PHONE_ID, params={"b_value": reply.sender}).first() is None
        s.commit()
    if inbound_id is None:
        with rt.db.session() as s:  # a provider retry: nothing to do, but say so where staff can see it
            audit.record(s, now, f"provider:{reply.channel}", "inbound.duplicate_ignored", reply.provider_key[:120])
            s.commit()
        return Stored(None, duplicate=True)
    return Stored(inbound_id, False, unknown)


def receive(rt: Runtime, reply: Reply) -> Received:
    """Store the reply once and act on it at once, in this thread (the simulator and direct callers; the webhooks
    `store` and leave acting to a worker). If acting fails, the stored reply stays `received` and a worker's
    `work` tries again: a reply is never lost, and never acted on twice."""
    stored = store(rt, reply)
    if stored.inbound_id is None:
        return Received(None, duplicate=True)
    try:
        result = process(rt, stored.inbound_id, storable_reply(reply))
    except Exception:
        log.exception("inbound %s stored but not processed; it will be retried", stored.inbound_id)
        return Received(stored.inbound_id, False, "pending")
    rt.wake()
    return result


def acted_on(rt: Runtime, provider_key: str) -> bool:
    """Whether the stored reply with this provider key has been acted on (or is unknown: nothing to wait for)."""
    with rt.db.session() as s:
        status = s.exec(select(Inbound.status).where(Inbound.provider_key == provider_key)).first()
    return status != "received"


def pending_count(rt: Runtime) -> int:
    """How many stored replies no worker has acted on yet."""
    with rt.db.session() as s:
        return int(s.exec(select(func.count()).select_from(Inbound).where(col(Inbound.status) == "received")).one())


def claim(rt: Runtime, limit: int = 50, inbound_id: int | None = None) -> list[int]:
    """Take up to `limit` stored replies (or the one given) for this worker, in one statement: a reply claimed by
    another worker is skipped until its claim expires (`dispatch.reply_claim_seconds`: that worker died, or failed
    on it). The claim only spares work; acting stays exactly once because `process` takes the row itself."""
    now = rt.clock.now()
    until = now + timedelta(seconds=rt.settings.dispatch.reply_claim_seconds)
    with rt.db.session() as s:
        pick = select(Inbound.id).where(
            col(Inbound.status) == "received",
            or_(col(Inbound.claim_until).is_(None), col(Inbound.claim_until) < now),
        )
        if inbound_id is not None:
            pick = pick.where(col(Inbound.id) == inbound_id)
        pick = pick.order_by(col(Inbound.id)).limit(limit)
        if s.get_bind().dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)  # two workers never wait on, nor take, the same rows
        rows = s.exec(
            update(Inbound)
            .where(col(Inbound.id).in_(pick.scalar_subquery()))
            .values(claim_until=until)
            .returning(col(Inbound.id))
            .execution_options(synchronize_session=False)
        ).all()
        s.commit()
    return sorted(int(r[0]) for r in rows)


def act_on(rt: Runtime, inbound_id: int) -> Received | None:
    """Act on one stored reply now, in this process, if no worker has claimed it (the webhook's "after answering"
    mode, without a worker thread). None: another worker has it, or it was acted on already."""
    if not claim(rt, 1, inbound_id):
        return None
    try:
        result = process(rt, inbound_id)
    except Exception:
        log.exception("inbound %s stored but not processed; it will be retried", inbound_id)
        return None
    rt.wake()
    return result


def work(rt: Runtime, limit: int = 50) -> int:
    """One pass of a reply worker: claim stored replies and act on each (oldest first); returns how many it took.
    One that fails stays `received` and is taken again once its claim expires."""
    ids = claim(rt, limit)
    acted = 0
    for inbound_id in ids:
        try:
            process(rt, inbound_id)
            acted += 1
        except Exception:
            log.exception("inbound %s not processed; it will be retried", inbound_id)
    if acted:
        rt.wake()  # an escalation or a keyword answer was queued: the dispatcher sends it now
    return len(ids)


def process(rt: Runtime, inbound_id: int, reply: Reply | None = None) -> Received:
    """Act on one stored reply, once, in three steps so that no transaction is open while the detector reads:

    1. read the reply, its patient and what the verdict depends on (a read: no write lock);
    2. read it for red flags, with no transaction open (bounded: `Detector.assess` reads at most MAX_TOKENS);
    3. one short write transaction whose first statement takes the row (`received` -> `processing`): a concurrent
       attempt finds nothing to do and its verdict is dropped; a failure rolls the row back to `received` for a
       later retry. Reading twice is harmless; acting twice cannot happen (issue 11, finding 7)."""
    now = rt.clock.now()
    with rt.db.session() as s:
        inbound = s.get(Inbound, inbound_id)
        if inbound is None or inbound.status != "received":
            return Received(inbound_id, True)
        reply = reply or _reply_of(inbound)
        body = inbound.body
        patient = _match(s, reply)
        flood = (reply.meta or {}).get("flood")
        subject = patient if patient is not None else _claimed(s, reply)
        reading = _reading_context(rt, s, subject, now) if subject is not None and flood != "unread" else None
    verdict = _assess(rt, body, reading.context()) if reading is not None and body.strip() else None
    with rt.db.session() as s:
        taken = s.connection().execute(_TAKE, {"b_id": inbound_id})
        if not taken.rowcount:
            return Received(inbound_id, True)
        inbound = s.get(Inbound, inbound_id)
        assert inbound is not None
        patient = _match(s, reply)
        if patient is None:
            claimed = _claimed(s, reply)
            unverified = claimed is not None
            if claimed is not None and flood != "unread" and body.strip():
                if reading is None or reading.patient_id != claimed.id:
                    reading = _reading_context(rt, s, claimed, now)
                    verdict = _assess(rt, body, reading.context())
                if verdict is not None and verdict.level != Level.NONE:
                    result = _unverified_red_flag(rt, s, inbound, claimed, reply, now, verdict, reading)
                    s.commit()
                    return result
            inbound.intent, inbound.status = "unknown_sender", "ignored"
            inbound.reason = (
                "sender's address is a patient's, but no reply token and no passing SPF or DKIM: not trusted; kept"
                " for audit"
                if unverified
                else "sender is not an enrolled patient; kept for audit"
            )
            inbound.processed_at = now
            action = "inbound.unverified_sender" if unverified else "inbound.unknown_sender"
            audit.record(s, now, f"{reply.channel}:unknown", action, f"inbound:{inbound_id}")
            s.commit()
            return Received(inbound_id, False, "unknown_sender")
        inbound.patient_id = patient.id
        replied(s, patient.id, inbound.received_at)  # the patient's "silent since" (services/silence.py)
        if flood == "unread" and not reply.provider_opt_out:  # a STOP Twilio already handled is still recorded
            inbound.status, inbound.processed_at = "flood", now
            inbound.reason = "over the sender's flood limit and reading budget: stored unread, for staff to read"
            s.commit()
            return Received(inbound_id, False, "flood")
        # Only the owner of a number can text from it, and only the patient gets their reply-to address (or
        # passes SPF/DKIM for it): any such reply confirms the contact (double opt-in), before acting on it, so
        # that a red flag in this very reply is answered at once.
        confirmed_now = confirmation.confirm(s, patient, reply.channel, "reply", now)
        if verdict is None or reading is None or (reading.patient_id != patient.id):
            reading = _reading_context(rt, s, patient, now)  # the patient changed between the steps: read again
            verdict = _assess(rt, body, reading.context()) if body.strip() else None
        result = _act(
            rt,
            s,
            inbound,
            patient,
            reply,
            body,
            now,
            verdict,
            reading,
            quiet=flood == "read",
            confirmed_now=confirmed_now,
        )
        inbound.processed_at = now
        s.commit()
    return result


@dataclass(frozen=True)
class _Reading:
    """What a verdict depends on besides the text, read before the detector runs."""

    patient_id: int | None
    weeks: float | None
    question: Any
    today: date | None = None  # the reply's date where the patient is ("since Christmas" counts back from it)

    def context(self) -> Any:
        from followup.redflags import ReplyContext

        return ReplyContext(weeks_since_onset=self.weeks, last_question=self.question, today=self.today)


def _assess(rt: Runtime, body: str, context: Any) -> Any:
    """The detector's verdict on one reply, timed for /metrics."""
    started = time.perf_counter()
    verdict = rt.detector.assess(body, context)
    metrics.DETECTOR_SECONDS.observe(time.perf_counter() - started)
    return verdict


def _reading_context(rt: Runtime, s: Session, patient: Patient, now: datetime) -> _Reading:
    question = _last_question(rt, s, patient, now)
    weeks = (now - patient.onset_at).total_seconds() / (7 * 86400) if patient.onset_at else None
    return _Reading(patient.id, weeks, question, local_date(now, patient.timezone or rt.settings.clinic.timezone))


def local_date(now: datetime, zone: str) -> date:
    """The date at `now` in the patient's time zone (a naive `now` is UTC)."""
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(zone)).date()


def _reply_of(inbound: Inbound) -> Reply:
    meta = dict(inbound.meta or {})
    return Reply(
        channel=inbound.channel,
        provider_key=inbound.provider_key,
        sender=inbound.sender,
        body=inbound.body,
        subject=inbound.subject,
        reply_token=meta.get("reply_token"),
        provider_opt_out=meta.get("provider_opt_out"),
        meta=meta,
    )


def _insert_once(s: Session, reply: Reply, body: str, now: datetime) -> int | None:
    row = (
        s.connection()
        .execute(
            insert_new(s.get_bind().dialect.name, "inbound", "provider_key"),
            {
                "provider_key": reply.provider_key,
                "channel": reply.channel,
                "sender": reply.sender,
                "body": body,
                "subject": reply.subject,
                "verdict": {},
                "status": "received",
                "received_at": now,
                "meta": {
                    **(reply.meta or {}),
                    "reply_token": reply.reply_token,
                    "provider_opt_out": reply.provider_opt_out,
                },
            },
        )
        .first()
    )
    return int(row[0]) if row else None


def _match(s: Session, reply: Reply) -> Patient | None:
    """The patient a reply is from. SMS: by the number (Twilio's signature vouches for it). Email: by the per-patient
    reply-to token, else by the sender's address only when SendGrid's SPF or DKIM check passed for its domain
    (`sender_verified`, set by parsing.inbound_email): a From header alone is anyone's to write (finding 5)."""
    if reply.channel == Channel.SMS:
        return s.exec(_BY_PHONE, params={"b_value": reply.sender}).first()
    if reply.reply_token:
        found = s.exec(_BY_TOKEN, params={"b_value": reply.reply_token}).first()
        if found is not None:
            return found
    if not (reply.meta or {}).get("sender_verified"):
        return None
    return s.exec(_BY_EMAIL, params={"b_value": reply.sender}).first()


def _record_verdict(inbound: Inbound, verdict: Any, reading: _Reading, **flags: bool) -> None:
    """Keep the verdict with the reply, with what it depended on besides the text: it is the explanation staff
    read on the escalation page."""
    inbound.verdict = {
        **verdict.to_dict(),
        "explanation": verdict.explanation(),
        **flags,
        "context": {
            "weeks_since_onset": round(reading.weeks, 1) if reading.weeks is not None else None,
            "last_question": reading.question.id if reading.question else None,
        },
    }
    inbound.level = verdict.level


def _evidence(verdict: Any, inbound_id: int) -> list[dict[str, Any]]:
    """What an escalation shows of a reply: each rule finding, and the learned layer's clause when it decided."""
    evidence = [
        {"text": f.text, "criterion": f.criterion, "tier": f.tier, "rule": f.rule, "inbound_id": inbound_id}
        for f in verdict.findings
    ]
    if verdict.learned is not None and verdict.layer in ("learned", "language"):
        r = verdict.learned
        evidence.append(
            {
                "text": r.clause,
                "criterion": r.criterion if not verdict.review else None,
                "tier": verdict.tier,
                "rule": f"learned layer p={r.probability:.2f}"
                + (" (needs review)" if verdict.review else "")
                + (f", language {verdict.language}" if verdict.review_reason == "language" else ""),
                "inbound_id": inbound_id,
            }
        )
    return evidence


def _claimed(s: Session, reply: Reply) -> Patient | None:
    """The patient whose address an unverified email claims to come from (no reply token, no passing SPF or
    DKIM): not the patient as far as acting goes (`_match`), but a red flag in it must still reach a person."""
    if reply.channel != Channel.EMAIL:
        return None
    return s.exec(select(Patient).where(Patient.email == reply.sender)).first()


def _unverified_red_flag(
    rt: Runtime,
    s: Session,
    inbound: Inbound,
    claimed: Patient,
    reply: Reply,
    now: datetime,
    verdict: Any,
    reading: _Reading,
) -> Received:
    """A red flag in an email that claims a patient's address but is not proven theirs. Anyone can write a From
    header, so it opts no one out, confirms nothing and sends the patient nothing; but a real patient whose mail
    fails SPF may be the one writing "I can't breathe", so it is never just filed: it becomes a routine review
    item for staff, marked "sender not verified", with the clinic alerted as for any review (they call the
    patient on the number they know). It cannot page anyone as an emergency (issue 11, finding 5)."""
    assert inbound.id is not None and claimed.id is not None
    inbound.patient_id = claimed.id
    inbound.intent, inbound.status, inbound.processed_at = "unverified_sender", "processed", now
    inbound.reason = (
        "sender's address is a patient's, but no reply token and no passing SPF or DKIM: red flag for staff"
    )
    _record_verdict(inbound, verdict, reading, sender_unverified=True)
    evidence = [
        {**e, "tier": Tier.ROUTINE, "rule": f"{e['rule']} (sender not verified; read as {e['tier']})"}
        for e in _evidence(verdict, inbound.id)
    ]
    audit.record(s, now, "email:unknown", "inbound.unverified_sender", f"inbound:{inbound.id}", red_flag=True)
    esc, _ = escalate(
        rt,
        s,
        claimed,
        level=Level.RED_FLAG,
        tier=Tier.ROUTINE,
        criteria=list(verdict.criteria),
        evidence=evidence,
        source="reply",
        now=now,
        channel=reply.channel,
        inbound_id=inbound.id,
        review=True,
        tell_patient=False,
    )
    audit.record(
        s,
        now,
        "system",
        "escalation.sender_unverified",
        f"escalation:{esc.id}",
        patient_id=claimed.id,
        read_as=verdict.tier,
    )
    return Received(inbound.id, False, "unverified_sender", Level.RED_FLAG, esc.id)


def _act(
    rt: Runtime,
    s: Session,
    inbound: Inbound,
    patient: Patient,
    reply: Reply,
    body: str,
    now: datetime,
    verdict: Any,
    reading: _Reading,
    quiet: bool = False,
    confirmed_now: bool = False,
) -> Received:
    """Act on a reply already read: escalate a red flag, else keywords, else thank. `quiet` (a flood): nothing is
    sent back but escalation advice. `confirmed_now`: this reply confirmed the contact; its YES is answered by the
    messages that waited for it, not by "welcome back"."""
    assert patient.id is not None and inbound.id is not None
    keywords: Keywords = rt.keywords
    word = keywords.keyword(body) if body.strip() else None
    if reply.channel == Channel.EMAIL and word is None and reply.subject:
        word = keywords.keyword(reply.subject) if not body.strip() else None
    state = patient.sms_state if reply.channel == Channel.SMS else patient.email_state
    if word == "opt_in" and state == "opted_out":
        return _opt(rt, s, inbound, patient, reply, "opt_in", now, quiet)  # "YES" after STOP means opt back in
    if verdict is None:  # an empty reply: nothing to read
        verdict = _assess(rt, "", reading.context())
    overridden = False
    if verdict.review and verdict.layer == "learned" and (word is not None or keywords.opt_out_phrase(body)):
        # A keyword or an opt-out phrase ("please stop texting me") is what it says: a learned layer's doubt,
        # which no rule shares, does not hold up an opt-out. A rule's finding still does (see below).
        overridden = True
        verdict = replace(verdict, level=Level.NONE, tier=None, review=False, review_reason=None, layer=None)
    # The layer that decided: rules, learned or both (the learned layer only adds to the rules).
    layer = verdict.layer or ("rules" if verdict.findings else "none")
    metrics.VERDICTS.labels(str(verdict.level), layer).inc()
    _record_verdict(inbound, verdict, reading, **({"keyword_over_review": True} if overridden else {}))
    inbound.meta = {**(inbound.meta or {}), **_trend(body)}
    if verdict.level != Level.NONE:
        inbound.intent, inbound.status = "reply", "processed"
        evidence = _evidence(verdict, inbound.id)
        assert verdict.tier is not None
        esc, _alerted = escalate(
            rt,
            s,
            patient,
            level=verdict.level,
            tier=verdict.tier,
            criteria=list(verdict.criteria),
            evidence=evidence,
            source="reply",
            now=now,
            channel=reply.channel,
            inbound_id=inbound.id,
            review=verdict.review,
        )
        phrase = keywords.opt_out_phrase(body) or (word if word == "opt_out" else None)
        if phrase:
            audit.record(
                s,
                now,
                "system",
                "inbound.opt_out_with_red_flag",
                f"inbound:{inbound.id}",
                note="opt-out wording together with a red flag: escalated; staff to confirm the opt-out",
            )
        return Received(inbound.id, False, "reply", verdict.level, esc.id)
    if reply.provider_opt_out:
        mapped = {"stop": "opt_out", "start": "opt_in", "help": "help"}.get(reply.provider_opt_out.lower())
        if mapped:
            return _opt(rt, s, inbound, patient, reply, mapped, now, provider_answered=True)
    if word is not None:
        return _opt(rt, s, inbound, patient, reply, word, now, quiet or (confirmed_now and word == "opt_in"))
    if keywords.opt_out_phrase(body):
        return _opt(rt, s, inbound, patient, reply, "opt_out", now, quiet)
    inbound.intent, inbound.status = "reply", "processed"
    if not quiet:
        _ack(rt, s, patient, reply.channel, now)
    return Received(inbound.id, False, "reply", Level.NONE)


def _opt(
    rt: Runtime,
    s: Session,
    inbound: Inbound,
    patient: Patient,
    reply: Reply,
    intent: str,
    now: datetime,
    provider_answered: bool = False,
) -> Received:
    assert patient.id is not None and inbound.id is not None
    inbound.intent, inbound.status = intent, "processed"
    channel = reply.channel
    source = "sms_keyword" if channel == Channel.SMS else "email_keyword"
    back = (patient.sms_state if channel == Channel.SMS else patient.email_state) == "opted_out"
    if intent == "opt_out":
        set_channel_state(rt, s, patient, channel, "opted_out", source, now)
        template = "opt_out_confirm"
    elif intent == "opt_in":
        set_channel_state(rt, s, patient, channel, "ok", source, now)
        template = "opt_in_confirm"
    else:
        template = "help_reply"
    if not provider_answered:  # with Advanced Opt-Out, Twilio has already answered the keyword itself
        queue(s, rt.settings, drafts.consent_reply(inbound.id, patient.id, channel, template, now, back), now)
    return Received(inbound.id, False, intent, Level.NONE)


def _ack(rt: Runtime, s: Session, patient: Patient, channel: str, now: datetime) -> None:
    """Thank the patient for a reply, at most once a day (it also repeats the safety net)."""
    assert patient.id is not None
    recent = s.exec(_RECENT_ACK, params={"b_patient": patient.id, "b_since": now - ACK_EVERY}).first()
    if recent is None:
        queue(s, rt.settings, drafts.reply_ack(patient.id, channel, now), now)


def _last_question(rt: Runtime, s: Session, patient: Patient, now: datetime) -> Any:
    row = s.exec(_LAST_QUESTION, params={"b_patient": patient.id, "b_since": now - QUESTION_FRESH}).first()
    if row is None or row.question_id is None:
        return None
    try:
        return rt.detector.question(row.question_id)
    except KeyError:
        log.warning("check-in question %s is not defined in the red-flag criteria", row.question_id)
        return None


def _trend(body: str) -> dict[str, str]:
    for name, pattern in TREND:
        if pattern.search(body):
            return {"trend": name}
    return {}


UNKNOWN_REPLY_EVERY = timedelta(hours=24)


def unknown_sender_reply(rt: Runtime, sender: str) -> str:
    """The short "who we are" answer to a number we do not know: no personal data, and at most once a day per
    number so two automated systems cannot loop."""
    now = rt.clock.now()
    with rt.db.session() as s:
        # Every text from this number (it matches no patient) in the last day, this one included: a reply worker
        # may not have acted on them yet, so they are counted whether marked `unknown_sender` or not.
        seen = s.exec(
            select(Inbound.id).where(
                Inbound.sender == sender,
                col(Inbound.patient_id).is_(None),
                Inbound.received_at > now - UNKNOWN_REPLY_EVERY,
            )
        ).all()
    if len(seen) > 1:
        return ""
    clinic = clinic_context(rt.settings.clinic)
    # We cannot know the stranger's language: every language the clinic speaks, in one text while it fits.
    texts: list[str] = []
    for lang in rt.settings.clinic.languages:
        context = {"clinic": clinic, "keywords": rt.keywords.announced(lang)}
        rendered = rt.templates.render("unknown_sender", Channel.SMS, lang, context)
        if rendered.language == lang and rendered.body not in texts:
            texts.append(rendered.body)
        if segments("\n".join(texts))[1] > MAX_SEGMENTS:
            texts.pop()
    return "\n".join(texts)


# ---- a reply's statements, built once (each reply runs them: building them cost more than running them) ----------
_TAKE = (
    update(SQLModel.metadata.tables["inbound"])
    .where(
        SQLModel.metadata.tables["inbound"].c.id == bindparam("b_id"),
        SQLModel.metadata.tables["inbound"].c.status == "received",
    )
    .values(status="processing")
)
_BY_PHONE_ID = select(Patient.id).where(Patient.phone == bindparam("b_value"))
_BY_PHONE = select(Patient).where(Patient.phone == bindparam("b_value"))
_BY_TOKEN = select(Patient).where(Patient.reply_token == bindparam("b_value"))
_BY_EMAIL = select(Patient).where(Patient.email == bindparam("b_value"))
_RECENT_ACK = select(Message.id).where(
    Message.patient_id == bindparam("b_patient"),
    Message.template == drafts.REPLY_ACK,
    col(Message.created_at) > bindparam("b_since"),
)
_LAST_QUESTION = (
    select(Message)
    .where(
        Message.patient_id == bindparam("b_patient"),
        col(Message.question_id).is_not(None),
        col(Message.status).in_(WENT_OUT),
        col(Message.sent_at) > bindparam("b_since"),
    )
    .order_by(col(Message.sent_at).desc())
)
