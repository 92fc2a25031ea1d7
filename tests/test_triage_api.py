"""The clinic's API: the POST /api/triage contract, 422s that name the field and write nothing, bearer tokens,
re-triage, patient views and actions, the schedule, and a red flag at intake. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import T0
from factories import triage_body
from fastapi.testclient import TestClient
from sqlmodel import func, select

from followup import models as m
from followup.clock import FakeClock
from followup.core.vocab import MessageState
from followup.runtime import Runtime
from followup.services.dispatch import Dispatcher
from followup.services.tokens import create_token, revoke_token
from followup.transports.recording import RecordingTransport

TABLES = (m.Patient, m.Triage, m.Consent, m.Message, m.Escalation, m.AuditLog, m.DeliveryEvent)


def counts(rt: Runtime) -> dict[str, int]:
    """Rows in every table a triage may write."""
    with rt.db.session() as s:
        return {t.__name__: s.exec(select(func.count()).select_from(t)).one() for t in TABLES}


def messages(rt: Runtime, **where: Any) -> list[m.Message]:
    with rt.db.session() as s:
        stmt = select(m.Message).order_by(m.Message.due_at, m.Message.id)
        for key, value in where.items():
            stmt = stmt.where(getattr(m.Message, key) == value)
        return list(s.exec(stmt).all())


def run_pass(rt: Runtime) -> None:
    d = Dispatcher(rt, owner="test")
    try:
        d.run_once()
    finally:
        d.close()


def test_triage_contract(client: TestClient, auth: dict, rt: Runtime) -> None:
    """A valid triage answers 201 with the patient, the disposition and every scheduled step; rows are written."""
    r = client.post("/api/triage", json=triage_body(), headers=auth)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) >= {"patient_id", "triage_id", "disposition", "created", "steps", "red_flags"}
    assert body["disposition"] == "enrolled" and body["created"] is True and body["red_flags"] == []
    steps = {s["step_id"]: s for s in body["steps"]}
    # caffeine 5, sleep 5.5, water 3, stress 7, exercise yes, alcohol 4, calf and eyelid
    assert set(steps) == {s.id for s in rt.program.steps} - {"alcohol", "eyelid"}
    assert all(s["status"] == "scheduled" and s["channel"] == "sms" for s in steps.values())
    assert steps["welcome"]["due_at"] == "2026-11-25T18:00:00Z"  # enrolled 10:00 in Los Angeles: at once
    assert steps["caffeine"]["due_at"] == "2026-11-26T18:15:00Z"  # day 1 at 10:15 PST
    c = counts(rt)
    assert (c["Patient"], c["Triage"], c["Consent"], c["Message"]) == (1, 1, 2, len(steps))
    with rt.db.session() as s:
        p = s.get(m.Patient, body["patient_id"])
        assert p is not None
        assert (p.phone, p.email, p.status, p.enrolled_at) == ("+13105550142", "ana@example.org", "active", T0)


BAD = [
    ({"phone": "12345"}, "phone"),
    ({"phone": "+1 310 555 01420000"}, "phone"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"timezone": "PST"}, "timezone"),
    ({"consent": False}, "consent"),
    ({"consent": None}, "consent"),
    ({"phone": None, "email": None}, "phone"),
    ({"phone": None, "channel": "sms"}, "phone"),
    ({"email": "", "channel": "email"}, "email"),
    ({"email": "ana@", "channel": "email"}, "email"),
    ({"favourite_colour": "blue"}, "favourite_colour"),
    ({"answers": {"coffee": 3}}, "coffee"),
    ({"answers": {"sleep_hours": -1}}, "sleep_hours"),
    ({"channel": "pigeon"}, "channel"),
    ({"name": "   "}, "name"),
]


@pytest.mark.parametrize(
    ("over", "field"),
    BAD,
    ids=[
        "phone-too-short",
        "phone-too-long",
        "unknown-zone",
        "zone-abbreviation",
        "consent-false",
        "consent-missing",
        "no-phone-no-email",
        "sms-without-phone",
        "email-channel-without-email",
        "bad-email",
        "unknown-field",
        "unknown-answer",
        "negative-sleep",
        "unknown-channel",
        "blank-name",
    ],
)
def test_bad_input_is_422_naming_the_field_and_writes_nothing(
    client: TestClient, auth: dict, rt: Runtime, over: dict, field: str
) -> None:
    """Bad input answers 422 with the field in `loc`, and not a single row is added anywhere."""
    body = triage_body(**over)
    if over.get("consent", True) is None:
        del body["consent"]
    before = counts(rt)
    r = client.post("/api/triage", json=body, headers=auth)
    assert r.status_code == 422, r.text
    locs = [err["loc"] for err in r.json()["detail"]]
    assert any(field in loc for loc in locs), locs
    assert counts(rt) == before


def test_email_of_another_patient_is_422_and_changes_nobody(client: TestClient, auth: dict, rt: Runtime) -> None:
    """A phone of one patient with the email of another is refused (422 email) and neither patient changes."""
    a = client.post("/api/triage", json=triage_body(), headers=auth).json()["patient_id"]
    client.post("/api/triage", json=triage_body(name="Bo", phone="+13105550143", email="bo@example.org"), headers=auth)
    before = counts(rt)
    r = client.post("/api/triage", json=triage_body(name="Changed", email="bo@example.org"), headers=auth)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "email"]
    assert counts(rt) == before
    with rt.db.session() as s:
        p = s.get(m.Patient, a)
        assert p is not None and (p.name, p.email) == ("Ana Diaz", "ana@example.org")


@pytest.mark.parametrize(
    "header",
    [None, "Bearer fu_not-a-real-token", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer revoked"],
    ids=["missing", "unknown", "empty", "basic-scheme", "revoked"],
)
def test_no_or_invalid_bearer_is_401(client: TestClient, rt: Runtime, header: str | None) -> None:
    """Without a valid bearer token the API answers 401 and writes nothing."""
    if header == "Bearer revoked":
        tid, raw = create_token(rt, "old")
        assert revoke_token(rt, tid)
        header = f"Bearer {raw}"
    headers = {"Authorization": header} if header else {}
    before = counts(rt)
    for method, path in [("post", "/api/triage"), ("get", "/api/patients"), ("get", "/api/schedule")]:
        kwargs = {"json": triage_body()} if method == "post" else {}
        r = getattr(client, method)(path, headers=headers, **kwargs)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
    assert counts(rt) == before


def test_retriage_same_phone_national_format_updates(client: TestClient, auth: dict, rt: Runtime) -> None:
    """The same phone in national format is the same patient: updated, never duplicated, steps not doubled."""
    first = client.post("/api/triage", json=triage_body(), headers=auth).json()
    before = counts(rt)
    r = client.post(
        "/api/triage", json=triage_body(name="Ana María Diaz", phone="(310) 555-0142", email=None), headers=auth
    )
    assert r.status_code == 201, r.text
    again = r.json()
    assert (again["patient_id"], again["created"]) == (first["patient_id"], False)
    after = counts(rt)
    assert (after["Patient"], after["Triage"], after["Message"]) == (1, 2, before["Message"])
    with rt.db.session() as s:
        p = s.get(m.Patient, first["patient_id"])
        assert p is not None and (p.name, p.phone, p.email) == ("Ana María Diaz", "+13105550142", "ana@example.org")


def test_retriage_with_new_answers_adjusts_future_steps(
    client: TestClient, auth: dict, rt: Runtime, clock: FakeClock
) -> None:
    """Re-triage keeps the enrollment date, cancels unsent tips that no longer apply, and adds newly fitting ones."""
    pid = client.post("/api/triage", json=triage_body(), headers=auth).json()["patient_id"]
    clock.advance(timedelta(hours=2))
    r = client.post(
        "/api/triage",
        json=triage_body(answers={"caffeine_per_day": 0, "alcohol_per_week": 12}),
        headers=auth,
    )
    assert r.status_code == 201
    by_step = {x.step_id: x for x in messages(rt, patient_id=pid)}
    assert by_step["caffeine"].status == MessageState.CANCELLED and "re-triage" in (by_step["caffeine"].reason or "")
    assert by_step["alcohol"].status == MessageState.SCHEDULED
    assert by_step["alcohol"].due_at == T0.replace(hour=22) + timedelta(days=10)  # day 10, 14:00 PST
    assert len([x for x in by_step.values() if x.step_id == "welcome"]) == 1


def test_retriage_in_a_new_time_zone_replans_unsent_steps(client: TestClient, auth: dict, rt: Runtime) -> None:
    """A patient who moved zones keeps each unsent step at its local clock time, now in the new zone."""
    client.post("/api/triage", json=triage_body(), headers=auth)
    r = client.post("/api/triage", json=triage_body(timezone="America/New_York"), headers=auth)
    assert r.status_code == 201
    tip = messages(rt, step_id="caffeine")[0]
    assert tip.due_at == datetime(2026, 11, 26, 15, 15, tzinfo=UTC)  # 10:15 in New York, not in Los Angeles
    assert tip.expires_at == tip.due_at + timedelta(hours=24)
    closing = messages(rt, step_id="closing")[0]
    assert closing.due_at.astimezone(ZoneInfo("America/New_York")).time() == time(10, 45)


def test_patients_list_detail_and_timeline(
    client: TestClient, auth: dict, rt: Runtime, transports: dict[str, RecordingTransport]
) -> None:
    """GET /api/patients searches; GET /api/patients/{id} shows the timeline with each message's state."""
    pid = client.post("/api/triage", json=triage_body(), headers=auth).json()["patient_id"]
    client.post(
        "/api/triage",
        json=triage_body(name="Bo Chen", phone="+13105550143", email="bo@example.org", channel="email"),
        headers=auth,
    )
    run_pass(rt)
    assert len(transports["sms"].sent) == 1 and len(transports["email"].sent) == 1

    listing = client.get("/api/patients", headers=auth).json()
    assert listing["total"] == 2 and [p["name"] for p in listing["patients"]] == ["Bo Chen", "Ana Diaz"]
    assert [p["id"] for p in client.get("/api/patients?q=555-0142", headers=auth).json()["patients"]] == [pid]
    assert client.get("/api/patients?q=bo%20chen", headers=auth).json()["total"] == 1

    d = client.get(f"/api/patients/{pid}", headers=auth).json()
    assert (d["id"], d["status"], d["sms_state"], d["channel"]) == (pid, "active", "ok", "sms")
    (welcome,) = d["timeline"]
    assert (welcome["step_id"], welcome["status"], welcome["direction"]) == ("welcome", "sent", "out")
    assert welcome["provider_id"] == "RT000001" and "Ana" in welcome["body"]
    assert [u["step_id"] for u in d["upcoming"]][:2] == ["caffeine", "sleep"]
    assert all(u["status"] == "scheduled" for u in d["upcoming"])
    assert [c["channel"] for c in d["consents"]] == ["sms", "email"]
    assert d["triages"][0]["disposition"] == "enrolled"
    assert client.get("/api/patients/9999", headers=auth).status_code == 404


def test_pause_resume_unenroll(client: TestClient, auth: dict, rt: Runtime) -> None:
    """Pause and resume change the status; unenroll cancels every scheduled message; wrong moves are 409."""
    pid = client.post("/api/triage", json=triage_body(), headers=auth).json()["patient_id"]
    assert client.post(f"/api/patients/{pid}/resume", headers=auth).status_code == 409
    assert client.post(f"/api/patients/{pid}/pause", headers=auth).json()["status"] == "paused"
    assert client.post(f"/api/patients/{pid}/resume", headers=auth).json()["status"] == "active"
    r = client.post(f"/api/patients/{pid}/unenroll", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "unenrolled"
    msgs = messages(rt, patient_id=pid)
    assert msgs and all(x.status == MessageState.CANCELLED and "unenrolled" in (x.reason or "") for x in msgs)
    assert client.post(f"/api/patients/{pid}/pause", headers=auth).status_code == 409
    assert client.post("/api/patients/9999/pause", headers=auth).status_code == 404
    assert client.post(f"/api/patients/{pid}/delete", headers=auth).status_code == 422


def test_schedule_lists_next_messages_in_order(client: TestClient, auth: dict) -> None:
    """GET /api/schedule lists scheduled messages across patients, soonest first, up to `limit`."""
    client.post("/api/triage", json=triage_body(), headers=auth)
    client.post(
        "/api/triage",
        json=triage_body(name="Raj", phone="+13105550177", email=None, timezone="Asia/Kolkata"),
        headers=auth,
    )
    rows = client.get("/api/schedule?limit=5", headers=auth).json()
    assert len(rows) == 5
    assert [r["due_at"] for r in rows] == sorted(r["due_at"] for r in rows)
    assert {r["patient_id"] for r in rows} == {1, 2}
    assert rows[0]["step_id"] == "welcome" and rows[0]["status"] == "scheduled"


def test_red_flag_at_intake_escalates(client: TestClient, auth: dict, rt: Runtime) -> None:
    """Weakness at triage: disposition escalated, no program steps, an escalation row, alerts to the on-call list."""
    r = client.post("/api/triage", json=triage_body(answers={"weakness": True}), headers=auth)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["disposition"] == "escalated" and body["escalation_id"] is not None
    assert "weakness" in body["red_flags"]
    assert [s["kind"] for s in body["steps"]] == ["escalation"]
    msgs = messages(rt)
    assert not [x for x in msgs if x.kind in ("welcome", "tip", "checkin", "closing")]
    alerts = sorted((x.channel, x.to) for x in msgs if x.kind == "alert")
    assert alerts == [("email", "oncall@clinic.example"), ("sms", "+13105550199")]
    assert all(x.urgent and x.escalation_id == body["escalation_id"] for x in msgs)
    with rt.db.session() as s:
        (esc,) = s.exec(select(m.Escalation)).all()
        p = s.get(m.Patient, body["patient_id"])
    assert (esc.status, esc.source, esc.patient_id) == ("open", "triage", body["patient_id"])
    assert "weakness" in esc.criteria and esc.evidence
    assert p is not None and p.status == "escalated"


def test_red_flag_at_retriage_cancels_the_program(client: TestClient, auth: dict, rt: Runtime) -> None:
    """An enrolled patient re-triaged with a red flag has every unsent program step cancelled."""
    pid = client.post("/api/triage", json=triage_body(), headers=auth).json()["patient_id"]
    r = client.post("/api/triage", json=triage_body(answers={"speech_swallowing": True}), headers=auth)
    assert r.json()["disposition"] == "escalated"
    program = [x for x in messages(rt, patient_id=pid) if x.step_id]
    assert program and all(x.status == MessageState.CANCELLED and x.reason == "red flag at triage" for x in program)
