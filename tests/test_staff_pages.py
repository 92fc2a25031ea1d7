"""What clinic staff read (issue 12): the escalation page opens with how to reach the patient, shows the triage
for every escalation and events in words; the patient page takes its trend from the last assessed reply, names
steps by the program's labels and shows held steps as held; upcoming visits by day. The pure wording rules are
pinned by table tests at the end. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import T0
from fastapi.testclient import TestClient
from test_dashboard import PHONE, clinician, enroll, reply, rows, sms_in  # noqa: F401 (clinician is a fixture)

from followup.core.attention import attention_key
from followup.core.figures import reply_mark
from followup.models import Escalation, Message
from followup.runtime import Runtime
from followup.services import booking
from followup.services.dispatch import Dispatcher
from followup.web.dashboard.words import answer_label, answer_text, event_text

RED_FLAG = "my right hand is getting weaker"


def red_flag_reply(client: TestClient, rt: Runtime, auth: dict[str, str], **over: Any) -> tuple[int, int]:
    """Enroll the contract's patient, send the welcome, and have them text a red flag: (patient id, escalation id)."""
    pid = enroll(client, auth, **over)
    Dispatcher(rt).run_once()
    assert sms_in(client, rt, RED_FLAG, "SM" + "7" * 32).status_code == 200
    (esc,) = rows(rt, Escalation)
    assert esc.source == "reply" and esc.triage_id is None
    assert esc.id is not None
    return pid, esc.id


def test_escalation_page_opens_with_how_to_reach_the_patient(
    clinician: TestClient,  # noqa: F811
    rt: Runtime,
    auth: dict[str, str],
) -> None:
    """Phone and email are tap-to-call / tap-to-email links above everything else on the page."""
    _, eid = red_flag_reply(clinician, rt, auth)
    html = clinician.get(f"/dashboard/escalations/{eid}").text
    content = html.split("</nav>", 1)[1]
    tel = content.index(f'href="tel:{PHONE}"')
    assert ">+1 310-555-0142</a>" in content and 'href="mailto:ana@example.org"' in content
    assert tel < content.index("Actions") < content.index("Why it escalated")


def test_reply_escalation_shows_the_triage_answers_as_entered(
    clinician: TestClient,  # noqa: F811
    rt: Runtime,
    auth: dict[str, str],
) -> None:
    """A reply-sourced escalation shows the patient's triage: the questions in words, values as entered."""
    _, eid = red_flag_reply(clinician, rt, auth)
    html = clinician.get(f"/dashboard/escalations/{eid}").text
    triage = html.split('id="tri-h"', 1)[1].split("</section>", 1)[0]
    assert "the patient's latest triage" in triage
    assert "<dt>Hours of sleep a night</dt><dd>5.5</dd>" in triage
    assert "<dt>Cups of coffee, tea or energy drinks a day</dt><dd>5</dd>" in triage  # not "5.0"
    assert "<dt>Where the twitching is</dt><dd>calf, eyelid</dd>" in triage
    assert ".0<" not in triage and "caffeine_per_day" not in triage


def test_events_read_as_sentences_and_a_patient_booking_is_not_owned(
    clinician: TestClient,  # noqa: F811
    rt: Runtime,
    auth: dict[str, str],
) -> None:
    """Events are sentences, not codes; a visit the patient booked reads "booked by the patient" once, and an
    escalation nobody acknowledged never says "owned"."""
    _, eid = red_flag_reply(clinician, rt, auth)
    slot = booking.view(rt, eid).slots[0]
    booking.book(rt, eid, slot)
    html = clinician.get(f"/dashboard/escalations/{eid}").text
    assert re.search(r"Escalation opened, (routine|urgent), from a reply</li>", html)
    assert re.search(r"Visit booked for \w{3} \d\d \w{3} \d\d:\d\d by the patient", html)
    assert "escalation.opened" not in html and "by system" not in html
    assert "booked booked" not in html and "booked by the patient, from their link" in html
    assert "owned" not in html and "booked, never acknowledged" in html


def test_patient_page_trend_comes_from_the_last_assessed_reply(
    clinician: TestClient,  # noqa: F811
    rt: Runtime,
    auth: dict[str, str],
) -> None:
    """An earlier "better" does not stand beside a later red flag: the latest mark is the red flag."""
    pid = enroll(clinician, auth)
    reply(clinician_rt := rt, pid, 2, "much better thanks", "better")
    Dispatcher(clinician_rt).run_once()
    assert sms_in(clinician, rt, RED_FLAG, "SM" + "8" * 32).status_code == 200
    html = clinician.get(f"/dashboard/patients/{pid}").text
    assert "latest: <strong>red flag</strong>" in html
    assert "latest: <strong>better</strong>" not in html


def test_patient_page_names_steps_by_label_and_shows_held_tips(
    clinician: TestClient,  # noqa: F811
    rt: Runtime,
    auth: dict[str, str],
) -> None:
    """The schedule reads "Tip: caffeine", not "tip: caffeine" ids, and tips held by an open escalation say so."""
    pid, _ = red_flag_reply(clinician, rt, auth)
    html = clinician.get(f"/dashboard/patients/{pid}").text
    schedule = html.split('id="up-h"', 1)[1].split("</section>", 1)[0]
    assert "Tip: caffeine" in schedule and "Check-in 1 (day 7)" in schedule
    assert "checkin_1" not in schedule and "tip_caffeine" not in schedule
    assert '<strong>held</strong> <span class="muted">(tips paused while an escalation is open)</span>' in schedule
    checkin_row = schedule.split("Check-in 1 (day 7)", 1)[1].split("</tr>", 1)[0]
    assert "scheduled" in checkin_row and "held" not in checkin_row  # check-ins still go
    assert "Welcome and safety net" in html  # the timeline uses the labels too


@pytest.mark.parametrize(
    ("email", "shown", "hidden"),
    [
        (None, "<dt>Email</dt><dd>none</dd>", "email ok"),
        ("ana@example.org", 'href="mailto:ana@example.org"', "<dt>Email</dt><dd>none</dd>"),
    ],
    ids=["no-email", "email"],
)
def test_patient_page_shows_no_badge_for_a_missing_address(
    clinician: TestClient,  # noqa: F811
    auth: dict[str, str],
    email: str | None,
    shown: str,
    hidden: str,
) -> None:
    """ "Email: none" stands alone; an address gets its mailto link and its state."""
    pid = enroll(clinician, auth, email=email)
    html = clinician.get(f"/dashboard/patients/{pid}").text
    assert shown in html and hidden not in html


def test_upcoming_visits_by_day(clinician: TestClient, rt: Runtime, auth: dict[str, str]) -> None:  # noqa: F811
    """Booked visits appear under their day with time, patient, a tap-to-call number and the escalation."""
    _, eid = red_flag_reply(clinician, rt, auth)
    slot = booking.view(rt, eid).slots[0]
    booking.book(rt, eid, slot)
    html = clinician.get("/dashboard/visits").text
    local = slot.astimezone(__import__("zoneinfo").ZoneInfo(rt.settings.clinic.timezone))
    assert f'>{local.strftime("%A %d %B")} <span class="pill">1 visit</span>' in html
    assert f"<strong>{local.strftime('%H:%M')}</strong>" in html
    assert f'href="tel:{PHONE}"' in html and f'href="/dashboard/escalations/{eid}"' in html
    assert "Ana Diaz" in html and "the patient" in html
    assert 'href="/dashboard/visits">1</a>' in clinician.get("/dashboard/overview").text or slot > T0 + timedelta(
        days=7
    )
    empty = clinician.get("/dashboard/visits?days=1")
    assert empty.status_code == 200


# ---- the pure rules -------------------------------------------------------------------------------------------

_T = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("open", True, "routine", _T), ("open", False, "emergency", _T - timedelta(hours=5))),  # overdue wins
        (("open", False, "routine", _T), ("acknowledged", False, "emergency", _T - timedelta(days=3))),
        (("open", True, "emergency", _T), ("open", True, "urgent", _T - timedelta(hours=9))),  # then tier
        (("open", False, "urgent", _T - timedelta(hours=2)), ("open", False, "urgent", _T)),  # then age
        (("acknowledged", False, "urgent", _T), ("acknowledged", False, "routine", _T - timedelta(days=1))),
        (("acknowledged", False, "routine", _T), ("booked", False, "emergency", _T - timedelta(days=1))),
        (("open", False, "routine", _T), ("open", False, "mystery", _T - timedelta(days=1))),  # unknown tier last
    ],
)
def test_attention_order(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    """The first escalation of each pair sorts before the second."""
    assert attention_key(*a) < attention_key(*b)


@pytest.mark.parametrize(
    ("level", "meta", "mark"),
    [
        ("emergency", {"trend": "better"}, "emergency"),
        ("red_flag", {"trend": "better"}, "red_flag"),
        ("red_flag", {}, "red_flag"),
        ("none", {"trend": "better"}, "better"),
        (None, {"trend": "worse"}, "worse"),
        ("none", {"trend": "sideways"}, None),
        ("none", None, None),
    ],
)
def test_reply_mark(level: str | None, meta: dict[str, Any] | None, mark: str | None) -> None:
    """A red flag outranks the better / same / worse the same reply may carry."""
    assert reply_mark(level, meta) == mark


def _local(dt: datetime, fmt: str = "%a %d %b %H:%M") -> str:
    return dt.astimezone(UTC).strftime(fmt)


@pytest.mark.parametrize(
    ("action", "actor", "detail", "text"),
    [
        (
            "escalation.opened",
            "system",
            {"tier": "urgent", "source": "reply"},
            "Escalation opened, urgent, from a reply",
        ),
        (
            "escalation.no_oncall_configured",
            "system",
            {},
            "No one was alerted: no on-call contact is configured",
        ),
        ("escalation.acknowledge", "staff:3", {}, "Acknowledged by nurse@clinic.example"),
        ("escalation.close", "staff:9", {}, "Closed by staff:9"),
        (
            "appointment.booked",
            "patient:4",
            {"starts_at": "2026-12-01T18:00:00+00:00"},
            "Visit booked for Tue 01 Dec 18:00 by the patient",
        ),
        (
            "escalation.realerted",
            "system",
            {"round": 2, "tier_index": 1, "recipients": 3},
            "Not acknowledged in time: re-alert 2 sent to 3 contact(s) of on-call tier 1",
        ),
        ("escalation.something_new", "system", {}, "Escalation something new"),
    ],
)
def test_event_text(action: str, actor: str, detail: dict[str, Any], text: str) -> None:
    """Audit entries read as sentences with who did it; the service itself is not named."""
    assert event_text(action, actor, detail, {"staff:3": "nurse@clinic.example"}, _local) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "yes"),
        (False, "no"),
        (6.0, "6"),
        (5.5, "5.5"),
        (7, "7"),
        (["calf", "eyelid"], "calf, eyelid"),
        ([], "none"),
        (None, "not answered"),
    ],
)
def test_answer_text(value: Any, text: str) -> None:
    """Answers read as entered: 6, not 6.0."""
    assert answer_text(value) == text


def test_answer_label_uses_the_question() -> None:
    """Known keys read as their question; unknown ones as words."""
    assert answer_label("stress") == "Stress, 0 (none) to 10 (extreme)"
    assert answer_label("new_question_x") == "New question x"


def test_held_state_is_not_stored(rt: Runtime, client: TestClient, auth: dict[str, str]) -> None:
    """Showing a held tip changes nothing in the database: the dispatcher alone moves messages."""
    pid, _ = red_flag_reply(client, rt, auth)
    before = [(x.id, x.status, x.reason, x.due_at) for x in rows(rt, Message, Message.patient_id == pid)]
    from followup.services.patients import detail

    schedule = detail(rt, pid)["schedule"]
    assert any(r.state == "held" for r in schedule)
    assert [(x.id, x.status, x.reason, x.due_at) for x in rows(rt, Message, Message.patient_id == pid)] == before
    assert all(x.status != "held" for x in rows(rt, Message))  # "held" is shown, never stored
