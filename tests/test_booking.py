"""Booking from the escalation link: the calendar (pure), the page, one-transaction booking, races, cancel/move."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import ROOT, T0
from fastapi.testclient import TestClient
from icalendar import Calendar as ICal
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlmodel import select

from followup.content.dates import when_text
from followup.core.calendar import Calendar, calendar_slots, offered_slots
from followup.core.sms import gsm_safe
from followup.models import Appointment, AuditLog, Escalation, Message, Patient
from followup.runtime import Runtime
from followup.services import booking
from followup.services.dispatch import Dispatcher
from followup.transports.recording import RecordingTransport

LA = ZoneInfo("America/Los_Angeles")
WEEKDAYS = {
    0: [(time(9), time(12)), (time(13), time(15))],
    1: [(time(9), time(12))],
    2: [(time(9), time(12))],
    3: [(time(9), time(12))],
    4: [(time(9), time(12))],
}


def cal(**over: Any) -> Calendar:
    base: dict[str, Any] = {
        "opening": WEEKDAYS,
        "slot": timedelta(minutes=30),
        "horizon_days": 7,
        "closed": frozenset(),
        "tz": LA,
        "reserve": timedelta(hours=48),
        "notice": timedelta(minutes=60),
    }
    return Calendar(**{**base, **over})


def la(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LA).astimezone(UTC)


# ---- the calendar (pure) ---------------------------------------------------------------------------------------

MON = la(2026, 11, 23, 7)  # Monday 07:00 in Los Angeles


@pytest.mark.parametrize(
    ("calendar", "now", "first", "count_on_monday"),
    [
        (cal(), MON, la(2026, 11, 23, 9), 10),  # 6 morning + 4 afternoon slots, none over lunch
        (cal(), la(2026, 11, 23, 10, 10), la(2026, 11, 23, 11, 30), 5),  # 60 min notice, on the half hour
        (cal(closed=frozenset({date(2026, 11, 23)})), MON, la(2026, 11, 24, 9), 0),  # a holiday
        (cal(slot=timedelta(minutes=45)), MON, la(2026, 11, 23, 9), 6),  # 09:00 .. 11:15, 13:00, 13:45
    ],
    ids=["full day", "notice", "closed day", "45 min slots"],
)
def test_calendar_slots(calendar: Calendar, now: datetime, first: datetime, count_on_monday: int) -> None:
    """Slots follow opening hours, slot length, closed days and the minimum notice."""
    slots = calendar_slots(calendar, now)
    assert slots[0] == first
    monday = [s for s in slots if s.astimezone(LA).date() == date(2026, 11, 23)]
    assert len(monday) == count_on_monday
    assert all(s.astimezone(LA).weekday() < 5 for s in slots)  # weekends are closed
    assert all(s.astimezone(LA).time() != time(12) for s in slots)  # no slot runs into lunch


def test_calendar_skips_the_missing_hour_of_dst() -> None:
    """On the spring-forward Sunday a 02:00-04:00 opening yields 03:00 and 03:30 only; fall-back has no twins."""
    night = {6: [(time(1), time(4))]}
    spring = calendar_slots(cal(opening=night, horizon_days=1, notice=timedelta()), la(2026, 3, 8, 0))
    assert [s.astimezone(LA).strftime("%H:%M") for s in spring] == ["01:00", "01:30", "03:00", "03:30"]
    autumn = calendar_slots(cal(opening=night, horizon_days=1, notice=timedelta()), la(2026, 11, 1, 0))
    assert len(autumn) == len(set(autumn)) == 6


@pytest.mark.parametrize(("tier", "sees_reserve"), [("routine", False), ("urgent", True), ("emergency", True)])
def test_reserve_is_for_urgent_and_emergency(tier: str, sees_reserve: bool) -> None:
    """Slots within 48 hours are offered to urgent and emergency escalations only."""
    slots = offered_slots(cal(), MON, tier, set())
    soonest = min(slots)
    assert (soonest < MON + timedelta(hours=48)) is sees_reserve
    if not sees_reserve:
        assert soonest >= MON + timedelta(hours=48)


def test_taken_slots_are_not_offered() -> None:
    """A booked slot disappears from everyone's list."""
    first = calendar_slots(cal(), MON)[0]
    assert first not in offered_slots(cal(), MON, "urgent", {first})


@pytest.mark.parametrize(
    ("language", "text", "sms"),
    [
        ("en", "Saturday 28 November, 09:30", "Saturday 28 November, 09:30"),
        ("es", "sábado 28 de noviembre, 09:30", "sabado 28 de noviembre, 09:30"),
    ],
)
def test_when_text_and_its_sms_form(language: str, text: str, sms: str) -> None:
    """Dates read naturally in the patient's language; the SMS form stays in GSM-7."""
    assert when_text(la(2026, 11, 28, 9, 30), LA, language) == text
    assert gsm_safe(text) == sms


# ---- through the page and the database --------------------------------------------------------------------------


def make_escalation(
    rt: Runtime,
    tier: str = "urgent",
    name: str = "Ana Diaz",
    phone: str | None = "+13105550142",
    email: str | None = "ana@example.org",
    channel: str = "sms",
    status: str = "open",
    language: str = "en",
) -> int:
    """A patient with an open escalation, written as the escalation service leaves them."""
    now = rt.clock.now()
    with rt.db.session() as s:
        p = Patient(
            name=name,
            phone=phone,
            email=email,
            channel=channel,
            timezone="America/Los_Angeles",
            language=language,
            status="escalated",
            reply_token=f"p{abs(hash(name)) % 10**16:016x}",
            sms_confirmed_at=now,
            email_confirmed_at=now,
            created_at=now,
            updated_at=now,
        )
        s.add(p)
        s.flush()
        assert p.id is not None
        e = Escalation(
            patient_id=p.id,
            level="red_flag",
            tier=tier,
            status=status,
            source="reply",
            criteria=["swallowing"],
            evidence=[{"text": "hard to swallow"}],
            created_at=now,
            updated_at=now,
        )
        s.add(e)
        s.commit()
        assert e.id is not None
        return e.id


def token_path(rt: Runtime, escalation_id: int) -> str:
    return booking.link(rt, escalation_id).removeprefix(rt.settings.server.public_url)


def slots_on_page(html: str) -> list[str]:
    return re.findall(r'name="slot" value="([^"]+)"', html)


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def get(rt: Runtime, model: Any, ident: int) -> Any:
    with rt.db.session() as s:
        return s.get(model, ident)


def appointments(rt: Runtime) -> list[Appointment]:
    with rt.db.session() as s:
        return list(s.exec(select(Appointment).order_by(Appointment.id)).all())


def book_via_page(client: TestClient, path: str, pick: int = 0) -> tuple[Any, str]:
    page = client.get(path)
    slot = slots_on_page(page.text)[pick]
    r = client.post(path, data={"csrf_token": csrf(page.text), "action": "book", "slot": slot}, follow_redirects=False)
    return r, slot


def test_booking_holds_confirms_and_notifies(
    client: TestClient, rt: Runtime, transports: dict[str, RecordingTransport]
) -> None:
    """Picking a slot books it in one go: escalation booked, patient active, patient and clinic told."""
    eid = make_escalation(rt, tier="urgent")
    path = token_path(rt, eid)
    r, slot = book_via_page(client, path)
    assert r.status_code == 303 and r.headers["location"].endswith("?done=booked")
    page = client.get(r.headers["location"])
    assert "Your visit is booked" in page.text and "Cancel this visit" in page.text
    (appt,) = appointments(rt)
    assert appt.status == "booked" and appt.starts_at == datetime.fromisoformat(slot)
    esc = get(rt, Escalation, eid)
    assert esc.status == "booked" and esc.booked_at == T0
    assert get(rt, Patient, esc.patient_id).status == "active"
    Dispatcher(rt).run_once()
    (sms,) = [m for m in transports["sms"].sent if m.to == "+13105550142"]
    assert "booked for" in sms.body and "/book/" in sms.body and "swallow" not in sms.body
    notices = [m for m in transports["email"].sent if m.to == "oncall@clinic.example"]
    assert len(notices) == 1 and f"#{eid}" in (notices[0].subject or "") and "Ana" not in notices[0].body


def test_urgent_page_offers_the_reserve_and_routine_does_not(client: TestClient, rt: Runtime) -> None:
    """The urgent link lists slots within 48 hours (marked soonest); the routine link starts after them."""
    urgent = slots_on_page(
        client.get(
            token_path(rt, make_escalation(rt, tier="urgent", name="U One", phone="+13105550001", email=None))
        ).text
    )
    routine = slots_on_page(
        client.get(
            token_path(rt, make_escalation(rt, tier="routine", name="R Two", phone="+13105550002", email=None))
        ).text
    )
    reserve_end = T0 + timedelta(hours=48)
    assert datetime.fromisoformat(urgent[0]) < reserve_end
    assert all(datetime.fromisoformat(s) >= reserve_end for s in routine)


def test_email_patient_gets_confirmation_with_calendar_invite(
    client: TestClient, rt: Runtime, transports: dict[str, RecordingTransport]
) -> None:
    """An email patient's confirmation links an .ics invite that opens at the booked time."""
    eid = make_escalation(rt, channel="email")
    path = token_path(rt, eid)
    _, slot = book_via_page(client, path)
    Dispatcher(rt).run_once()
    (mail,) = [m for m in transports["email"].sent if m.to == "ana@example.org"]
    assert "calendar.ics" in mail.body
    ics = client.get(f"{path}/calendar.ics")
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
    event = ICal.from_ical(ics.content).walk("VEVENT")[0]
    assert event.decoded("dtstart") == datetime.fromisoformat(slot)
    assert event.decoded("dtend") - event.decoded("dtstart") == timedelta(minutes=30)


def test_move_and_cancel_from_the_same_link(
    client: TestClient, rt: Runtime, transports: dict[str, RecordingTransport]
) -> None:
    """Moving frees the old slot and keeps one booking; cancelling puts the escalation back in the queue."""
    eid = make_escalation(rt)
    path = token_path(rt, eid)
    book_via_page(client, path, pick=0)
    r, second = book_via_page(client, path, pick=1)
    assert r.headers["location"].endswith("?done=moved")
    rows = appointments(rt)
    assert [a.status for a in rows] == ["cancelled", "booked"] and rows[1].starts_at == datetime.fromisoformat(second)
    page = client.get(path)
    r = client.post(path, data={"csrf_token": csrf(page.text), "action": "cancel"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("?done=cancelled")
    assert [a.status for a in appointments(rt)] == ["cancelled", "cancelled"]
    esc = get(rt, Escalation, eid)
    assert esc.status == "open" and get(rt, Patient, esc.patient_id).status == "escalated"
    Dispatcher(rt).run_once()
    bodies = [m.body for m in transports["sms"].sent if m.to == "+13105550142"]
    assert any("now on" in b for b in bodies) and any("cancelled" in b for b in bodies)


def test_two_patients_racing_for_one_slot_get_one_booking(rt: Runtime) -> None:
    """Two threads book the same slot for two escalations at once: one booking, one SlotTaken."""
    first = make_escalation(rt, name="Racer One", phone="+13105550011", email=None)
    second = make_escalation(rt, name="Racer Two", phone="+13105550012", email=None)
    slot = booking.view(rt, first).slots[0]
    barrier = threading.Barrier(2)
    outcomes: dict[int, str] = {}

    def attempt(eid: int) -> None:
        barrier.wait()
        try:
            booking.book(rt, eid, slot, f"patient:{eid}")
            outcomes[eid] = "booked"
        except booking.SlotTaken:
            outcomes[eid] = "taken"

    threads = [threading.Thread(target=attempt, args=(eid,)) for eid in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes.values()) == ["booked", "taken"]
    booked = [a for a in appointments(rt) if a.status == "booked"]
    assert len(booked) == 1 and booked[0].starts_at == slot
    loser = next(eid for eid, o in outcomes.items() if o == "taken")
    assert get(rt, Escalation, loser).status == "open"


def test_slot_just_taken_asks_to_pick_another(client: TestClient, rt: Runtime) -> None:
    """A patient who picks a slot someone booked since their page loaded sees "just taken" and fresh slots."""
    mine = token_path(rt, make_escalation(rt, name="Slow Patient", phone="+13105550021", email=None))
    theirs = make_escalation(rt, name="Fast Patient", phone="+13105550022", email=None)
    page = client.get(mine)
    slot = slots_on_page(page.text)[0]
    booking.book(rt, theirs, datetime.fromisoformat(slot), "patient:other")
    r = client.post(mine, data={"csrf_token": csrf(page.text), "action": "book", "slot": slot})
    assert r.status_code == 409 and "just taken" in r.text
    assert slot not in slots_on_page(r.text) and slots_on_page(r.text)
    assert len(appointments(rt)) == 1


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"action": "book", "slot": "2026-11-25T19:00:00+00:00"}, 403, "open too long"),  # no CSRF token
        ({"action": "book", "slot": ""}, 422, "Please pick a time"),
        ({"action": "book", "slot": "<script>alert(1)</script>"}, 422, "Please pick a time"),
        ({"action": "book", "slot": "2026-11-25T19:00:00"}, 422, "Please pick a time"),  # no zone
        ({"action": "book", "slot": "2026-11-25T03:00:00+00:00"}, 409, "just taken"),  # not a slot we offer
        ({"action": "drop tables"}, 422, "Please pick a time"),
        ({"action": "cancel"}, 409, "no booked visit"),
    ],
    ids=["no csrf", "empty", "hostile", "naive", "not offered", "bad action", "nothing to cancel"],
)
def test_bad_form_says_why_and_saves_nothing(
    client: TestClient, rt: Runtime, form: dict[str, str], status: int, message: str
) -> None:
    """Missing or hostile fields get a clear message; nothing is booked or changed."""
    eid = make_escalation(rt)
    path = token_path(rt, eid)
    page = client.get(path)
    data = form if status == 403 else {**form, "csrf_token": csrf(page.text)}
    r = client.post(path, data=data)
    assert r.status_code == status and message in r.text
    assert "<script>alert" not in r.text
    assert appointments(rt) == [] and get(rt, Escalation, eid).status == "open"


def expired_token(rt: Runtime, escalation_id: int) -> str:
    """A booking token signed with the right key, dated beyond booking_link_days."""
    days = rt.settings.security.booking_link_days

    class Old(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(datetime.now(UTC).timestamp()) - (days + 1) * 86400

    return URLSafeTimedSerializer(rt.links.key, salt="booking", signer=Old).dumps(escalation_id)


@pytest.mark.parametrize("kind", ["garbage", "tampered", "expired", "other key"])
def test_bad_or_expired_link_shows_nothing(client: TestClient, rt: Runtime, kind: str) -> None:
    """A tampered, expired or foreign token gets the "link expired" page (404) and no patient data."""
    eid = make_escalation(rt)
    good = token_path(rt, eid).removeprefix("/book/")
    token = {
        "garbage": "not-a-token",
        "tampered": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "expired": expired_token(rt, eid),
        "other key": URLSafeTimedSerializer("another-key", salt="booking").dumps(eid),
    }[kind]
    for url in (f"/book/{token}", f"/book/{token}/calendar.ics"):
        r = client.get(url)
        assert r.status_code == 404
        assert "Ana" not in r.text and "slot" not in r.text
    r = client.get(f"/book/{token}")
    assert "link has expired" in r.text and "call the clinic" in r.text
    posted = client.post(f"/book/{token}", data={"action": "book", "slot": "x"})
    assert posted.status_code == 404 and appointments(rt) == []


def test_closed_escalation_link_is_gone(client: TestClient, rt: Runtime) -> None:
    """Once the clinic closes the escalation the link answers 410 and books nothing."""
    eid = make_escalation(rt, status="closed")
    r = client.get(token_path(rt, eid))
    assert r.status_code == 410 and "closed" in r.text and "Ana" not in r.text
    with pytest.raises(booking.BookingClosed):
        booking.book(
            rt,
            eid,
            booking.view(rt, make_escalation(rt, name="B", phone="+13105550031", email=None)).slots[0],
            "patient:x",
        )


def test_external_scheduler_gets_the_link(client: TestClient, rt: Runtime) -> None:
    """With booking.external_url set, the link forwards there (our page is not used) and the click is audited."""
    rt.settings = rt.settings.with_overrides(booking={"external_url": "https://scheduler.clinic.example/neuro"})
    eid = make_escalation(rt)
    r = client.get(token_path(rt, eid), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "https://scheduler.clinic.example/neuro"
    with rt.db.session() as s:
        assert s.exec(select(AuditLog).where(AuditLog.action == "booking.link_opened")).first() is not None


def test_page_is_usable_without_javascript_on_a_phone(client: TestClient, rt: Runtime) -> None:
    """The page has a viewport, labelled radio buttons, a submit button, and no script at all."""
    r = client.get(token_path(rt, make_escalation(rt)))
    assert 'name="viewport"' in r.text and "<script" not in r.text
    assert re.search(r'<label><input type="radio" name="slot"', r.text)
    assert '<button type="submit">Book this time</button>' in r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["referrer-policy"] == "no-referrer"


def test_spanish_patient_gets_a_spanish_page_and_confirmation(
    client: TestClient, rt: Runtime, transports: dict[str, RecordingTransport]
) -> None:
    """The page and the SMS follow the patient's language."""
    path = token_path(rt, make_escalation(rt, language="es"))
    assert "Reservar esta hora" in client.get(path).text
    book_via_page(client, path)
    Dispatcher(rt).run_once()
    (sms,) = [m for m in transports["sms"].sent if m.to == "+13105550142"]
    assert "su cita es el" in sms.body


@pytest.mark.parametrize(
    ("language", "asked", "shown", "words", "summary"),
    [
        ("es", "", "es", "Elija una hora", "Cita en Achilles Neurology Clinic"),
        ("es", "en", "en", "Pick a time", "Cita en Achilles Neurology Clinic"),
        ("en", "", "en", "Pick a time", "Visit at Achilles Neurology Clinic"),
        ("en", "es", "es", "Elija una hora", "Visit at Achilles Neurology Clinic"),
    ],
    ids=["spanish", "spanish-reads-english", "english", "english-reads-spanish"],
)
def test_booking_page_language_and_calendar_file(
    client: TestClient, rt: Runtime, language: str, asked: str, shown: str, words: str, summary: str
) -> None:
    """<html lang> is the patient's language unless they switch at the top; the switch survives booking; the .ics
    is in the patient's language, its texts tagged with it."""
    path = token_path(rt, make_escalation(rt, language=language))
    page = client.get(f"{path}?lang={asked}" if asked else path)
    assert f'<html lang="{shown}">' in page.text and words in page.text
    other = "en" if shown == "es" else "es"
    assert f'href="{path}?lang={other}"' in page.text
    slot = slots_on_page(page.text)[0]
    data = {"csrf_token": csrf(page.text), "action": "book", "slot": slot, **({"lang": asked} if asked else {})}
    r = client.post(path, data=data, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith(f"&lang={asked}" if asked else "?done=booked")
    event = ICal.from_ical(client.get(f"{path}/calendar.ics").content).walk("VEVENT")[0]
    assert str(event["SUMMARY"]) == summary and event["SUMMARY"].params["LANGUAGE"] == language


def test_clinic_notice_is_not_counted_as_an_alert(rt: Runtime) -> None:
    """Booking notices to the clinic are kind "notice": they never restart the re-alert clock."""
    eid = make_escalation(rt)
    booking.book(rt, eid, booking.view(rt, eid).slots[0], "patient:1")
    with rt.db.session() as s:
        kinds = {m.kind for m in s.exec(select(Message).where(Message.to == "oncall@clinic.example")).all()}
    assert kinds == {"notice"}


def test_partial_unique_index_allows_one_active_booking_per_slot(rt: Runtime) -> None:
    """The database itself refuses a second booked row for a slot, and allows any number of cancelled ones."""
    from sqlalchemy.exc import IntegrityError

    first, second = make_escalation(rt), make_escalation(rt, name="Other", phone="+13105550041", email=None)
    slot = la(2026, 12, 1, 9)

    def row(eid: int, status: str) -> Appointment:
        return Appointment(
            escalation_id=eid,
            patient_id=get(rt, Escalation, eid).patient_id,
            starts_at=slot,
            ends_at=slot + timedelta(minutes=30),
            status=status,
            booked_by="test",
            created_at=T0,
            updated_at=T0,
        )

    with rt.db.session() as s:
        s.add_all([row(first, "cancelled"), row(second, "cancelled"), row(first, "booked")])
        s.commit()
    with rt.db.session() as s, pytest.raises(IntegrityError):
        s.add(row(second, "booked"))
        s.commit()


@pytest.mark.parametrize(
    ("booking", "problem"),
    [
        ({"hours": {"monday": ["09:00-12:00"]}}, "not a weekday"),
        ({"hours": {"mon": ["12:00-09:00"]}}, "ends after it starts"),
        ({"hours": {"mon": ["9-12"]}}, "ends after it starts"),
        ({"hours": {"mon": ["09:00-12:00", "11:00-13:00"]}}, "overlap"),
        ({"slot_minutes": 0}, "greater than or equal to 5"),
        ({"closed_days": ["25/12/2026"]}, "date"),
        ({"external_url": "javascript:alert(1)"}, "http(s) URL"),
    ],
)
def test_bad_booking_settings_are_refused(booking: dict[str, Any], problem: str) -> None:
    """Opening hours, slot length, closed days and the external URL are checked at start, naming the key."""
    from followup.settings import SettingsError, load_settings

    env = {f"FOLLOWUP_BOOKING__{k.upper()}": v if isinstance(v, str) else json.dumps(v) for k, v in booking.items()}
    with pytest.raises(SettingsError, match="booking") as err:
        load_settings(ROOT / "settings.toml", env)
    assert problem in str(err.value)


def test_booking_settings_from_the_environment() -> None:
    """Opening hours can be set as JSON in FOLLOWUP_BOOKING__HOURS, like any list or table."""
    from followup.settings import load_settings

    s = load_settings(
        ROOT / "settings.toml",
        {"FOLLOWUP_BOOKING__HOURS": '{"sat": ["10:00-12:00"]}', "FOLLOWUP_BOOKING__CLOSED_DAYS": '["2026-12-25"]'},
    )
    assert s.booking.opening() == {5: [(time(10), time(12))]} and s.booking.closed_days == [date(2026, 12, 25)]
