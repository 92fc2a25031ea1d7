"""Drafts (followup/services/drafts.py): one builder per kind of message, each giving the dedupe key, template,
urgency and addressee the services have always used; `queue` turns a draft into a scheduled row with its TTL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from followup.content.links import Links
from followup.core.program import Step
from followup.core.vocab import MessageKind, MessageState
from followup.models import Appointment, Escalation, Message
from followup.services import drafts
from followup.services.drafts import Draft
from followup.services.queue import queue
from followup.settings import Settings

NOW = datetime(2026, 11, 25, 18, 0, 5, tzinfo=UTC)
SETTINGS = Settings()
LINKS = Links(SETTINGS, "test-secret-key-" + "x" * 32)
CTX: dict[str, Any] = {"any": "context"}


def escalation(level: str = "red_flag", tier: str = "urgent") -> Escalation:
    return Escalation(
        id=5, patient_id=2, level=level, tier=tier, source="reply", nonce="n5", created_at=NOW, updated_at=NOW
    )


APPT = Appointment(
    id=9,
    escalation_id=5,
    patient_id=2,
    starts_at=NOW,
    ends_at=NOW,
    booked_by="patient:2",
    created_at=NOW,
    updated_at=NOW,
)
STEP = Step("caffeine", MessageKind.TIP, timedelta(days=2), None, "tip_caffeine", question="q1")
SENT_SMS = Message(
    id=3,
    patient_id=2,
    escalation_id=5,
    dedupe_key="esc:5:urgent:patient",
    channel="sms",
    kind="escalation",
    template="escalation_red_flag",
    step_id=None,
    question_id=None,
    context=CTX,
    urgent=True,
    due_at=NOW,
    expires_at=NOW,
    created_at=NOW,
    updated_at=NOW,
)


# (draft, dedupe key, kind, template, urgent, to)
CASES: list[tuple[Draft, str, str, str, bool, str | None]] = [
    (
        drafts.program_step(2, "sms", STEP, datetime(2026, 11, 1, 9, 30, tzinfo=UTC), NOW),
        "step:2:20261101T093000:caffeine",
        "tip",
        "tip_caffeine",
        False,
        None,
    ),
    (
        drafts.escalation_reply(escalation(), 2, "sms", ["swallowing"], LINKS, NOW),
        "esc:5:urgent:patient",
        "escalation",
        "escalation_red_flag",
        True,
        None,
    ),
    (
        drafts.escalation_reply(escalation("emergency", "emergency"), 2, "sms", ["breathing"], LINKS, NOW),
        "esc:5:emergency:patient",
        "escalation",
        "escalation_emergency",
        True,
        None,
    ),
    (
        drafts.escalation_reply(escalation("emergency", "emergency"), 2, "email", ["self_harm_plan"], LINKS, NOW),
        "esc:5:emergency:patient",
        "escalation",
        "escalation_selfharm",
        True,
        None,
    ),
    (
        drafts.escalation_reply(escalation("emergency", "emergency"), 2, "sms", ["overdose", "self_harm"], LINKS, NOW),
        "esc:5:emergency:patient",
        "escalation",
        "escalation_overdose",
        True,
        None,
    ),
    (
        drafts.consent_reply(7, 2, "sms", "opt_out_confirm", NOW),
        "inbound:7:opt_out_confirm",
        "consent",
        "opt_out_confirm",
        True,
        None,
    ),
    (drafts.reply_ack(2, "email", NOW), "ack:2:20261125T180005", "system", "reply_ack", True, None),
    (
        drafts.booking_confirmation(APPT, escalation(), "moved", 2, "sms", CTX, NOW),
        "appt:9:moved:patient",
        "system",
        "booking_confirm",
        True,
        None,
    ),
    (
        drafts.booking_confirmation(APPT, escalation(), "cancelled", 2, "sms", CTX, NOW),
        "appt:9:cancelled:patient",
        "system",
        "booking_cancelled",
        True,
        None,
    ),
    (
        drafts.resent_by_email(SENT_SMS, NOW),
        "esc:5:urgent:patient:email",
        "escalation",
        "escalation_red_flag",
        True,
        None,
    ),
    (
        drafts.clinic_alert(escalation(), "sms", "+13105550199", CTX, NOW),
        "esc:5:urgent:alert:sms:+13105550199",
        "alert",
        "clinic_alert",
        True,
        "+13105550199",
    ),
    (
        drafts.realert(escalation(), 2, "email", "lead@clinic.example", CTX, NOW),
        "esc:5:realert:2:email:lead@clinic.example",
        "alert",
        "realert",
        True,
        "lead@clinic.example",
    ),
    (
        drafts.unreachable_alert(2, "email", "oncall@clinic.example", CTX, NOW),
        "unreachable:2:20261125T180005:email:oncall@clinic.example",
        "alert",
        "unreachable_alert",
        True,
        "oncall@clinic.example",
    ),
    (
        drafts.booking_notice(APPT, escalation(), "booked", "email", "oncall@clinic.example", CTX, NOW),
        "appt:9:booked:clinic:email:oncall@clinic.example",
        "notice",
        "clinic_booking_notice",
        False,
        "oncall@clinic.example",
    ),
    (
        drafts.digest("2026-11-25", "oncall@clinic.example", CTX, NOW),
        "digest:2026-11-25:email:oncall@clinic.example",
        "digest",
        "digest",
        True,
        "oncall@clinic.example",
    ),
]


@pytest.mark.parametrize(("draft", "key", "kind", "template", "urgent", "to"), CASES)
def test_each_kind_of_message_has_its_key_template_urgency_and_addressee(
    draft: Draft, key: str, kind: str, template: str, urgent: bool, to: str | None
) -> None:
    """A builder gives the dedupe key, kind, template, urgency and clinic addressee of its kind of message."""
    assert (draft.dedupe_key, draft.kind, draft.template, draft.urgent, draft.to) == (key, kind, template, urgent, to)


def test_only_red_flag_advice_carries_a_booking_link() -> None:
    """Red-flag advice links to booking for its escalation; emergency advice has no link to book."""
    red_flag = drafts.escalation_reply(escalation(), 2, "sms", ["swallowing"], LINKS, NOW)
    assert LINKS.booking_escalation(red_flag.context["booking_url"].rsplit("/", 1)[-1]) == (5, "n5")
    emergency = drafts.escalation_reply(escalation("emergency", "emergency"), 2, "sms", [], LINKS, NOW)
    assert "booking_url" not in emergency.context


@pytest.mark.parametrize(("source", "alerted"), [("triage", True), ("reply", False)])
def test_escalation_advice_records_what_happened(source: str, alerted: bool) -> None:
    """The advice carries whether it follows the intake form or a reply, and whether anyone on call was alerted, so
    its text says so and no more."""
    draft = drafts.escalation_reply(escalation(), 2, "sms", ["swallowing"], LINKS, NOW, source=source, alerted=alerted)
    assert (draft.context["source"], draft.context["alerted"]) == (source, alerted)


def test_a_message_resent_by_email_keeps_everything_but_channel_and_time() -> None:
    """The email copy of a refused SMS keeps its patient, escalation, step, question, urgency and context."""
    d = drafts.resent_by_email(SENT_SMS, NOW)
    assert (d.channel, d.due_at, d.patient_id, d.escalation_id, d.context) == ("email", NOW, 2, 5, CTX)


def test_the_prefixes_match_the_keys() -> None:
    """The alert and unreachable prefixes that the alert clock and erasure read back start the keys written."""
    alert = drafts.clinic_alert(escalation(), "sms", "+13105550199", CTX, NOW)
    assert alert.dedupe_key.startswith(drafts.alert_prefix(5, "urgent"))
    assert drafts.unreachable_alert(2, "sms", "+1", CTX, NOW).dedupe_key.startswith(drafts.unreachable_prefix(2))
    assert not drafts.unreachable_alert(21, "sms", "+1", CTX, NOW).dedupe_key.startswith(drafts.unreachable_prefix(2))


def test_the_oncall_list_is_every_number_then_every_address() -> None:
    """New escalations alert each on-call number by SMS, then each on-call address by email."""
    settings = SETTINGS.with_overrides(clinic={"oncall_sms": ["+13105550199"], "oncall_email": ["a@x.example"]})
    assert drafts.oncall(settings) == [("sms", "+13105550199"), ("email", "a@x.example")]


class _Added:
    """A session that only records what was added (`queue` never reads)."""

    def __init__(self) -> None:
        self.rows: list[Any] = []

    def add(self, row: Any) -> None:
        self.rows.append(row)


@pytest.mark.parametrize(
    ("kind", "urgent", "ttl"),
    [
        ("welcome", False, SETTINGS.schedule.ttl_welcome),
        ("tip", False, SETTINGS.schedule.ttl_tip),
        ("checkin", False, SETTINGS.schedule.ttl_checkin),
        ("closing", False, SETTINGS.schedule.ttl_closing),
        ("notice", False, SETTINGS.schedule.ttl_tip),
        ("checkin", True, SETTINGS.schedule.ttl_urgent),
        ("alert", True, SETTINGS.schedule.ttl_urgent),
    ],
)
def test_queue_schedules_the_draft_with_the_ttl_of_its_kind(kind: str, urgent: bool, ttl: timedelta) -> None:
    """A queued draft is scheduled at its due time and expires one TTL later: urgent, else by kind, else a tip's."""
    session = _Added()
    due = NOW + timedelta(hours=3)
    draft = Draft("k:1", "sms", MessageKind(kind), "t", due, patient_id=2, urgent=urgent, context=CTX)
    msg = queue(session, SETTINGS, draft, NOW)
    assert session.rows == [msg]
    assert (msg.status, msg.due_at, msg.expires_at, msg.created_at) == (MessageState.SCHEDULED, due, due + ttl, NOW)
    assert (msg.dedupe_key, msg.kind, msg.patient_id, msg.urgent, msg.context) == ("k:1", kind, 2, urgent, CTX)
