"""Test data written once: triage answers (as the API and the intake form take them) and seeded messages.

Used by the tests (`from factories import ...`) and by the benchmarks (`bench/_common.py`). Plain functions that
return rows or dicts; only `seed_due_messages` writes, straight to a database URL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, insert, text

from followup.core.triage import OPTIONAL_RED_FLAG_QUESTIONS, RED_FLAG_QUESTIONS
from followup.core.vocab import MessageKind, MessageState
from followup.models import Message, Patient

# ---- triage answers --------------------------------------------------------------------------------------------


def answers(**over: Any) -> dict[str, Any]:
    """The contract's example answers: no red flag, some lifestyle factors (coffee, short sleep, stress)."""
    return {
        "onset_weeks": 2,
        "locations": ["calf", "eyelid"],
        **dict.fromkeys(RED_FLAG_QUESTIONS + OPTIONAL_RED_FLAG_QUESTIONS, False),
        "caffeine_per_day": 5,
        "sleep_hours": 5.5,
        "stress": 7,
        "water_glasses": 3,
        "intense_exercise": True,
        "alcohol_per_week": 4,
        **over,
    }


def calm_answers(**over: Any) -> dict[str, Any]:
    """Program-facing answers of a patient with no red flag and no lifestyle factor at all."""
    return {
        "onset_weeks": 2,
        "locations": ["calf"],
        **dict.fromkeys(RED_FLAG_QUESTIONS, False),
        "caffeine_per_day": 1,
        "sleep_hours": 8,
        "stress": 2,
        "water_glasses": 8,
        "intense_exercise": False,
        "alcohol_per_week": 0,
        **over,
    }


def triage_body(**over: Any) -> dict[str, Any]:
    """The contract's example triage, with overrides (answers merge)."""
    body: dict[str, Any] = {
        "name": "Ana Diaz",
        "phone": "+1 310 555 0142",
        "email": "ana@example.org",
        "channel": "sms",
        "timezone": "America/Los_Angeles",
        "language": "en",
        "consent": True,
        "answers": answers(**over.pop("answers", {})),
    }
    body.update(over)
    return body


def intake_form(**over: str | list[str] | None) -> dict[str, str | list[str]]:
    """A complete, valid intake form as a phone's browser posts it; a value of None leaves the field out."""
    data: dict[str, str | list[str] | None] = {
        "name": "Ana Diaz",
        "phone": "(310) 555-0142",
        "email": "ana@example.org",
        "channel": "sms",
        "timezone": "America/Los_Angeles",
        "language": "en",
        "locations": ["calf", "eyelid"],
        "onset_weeks": "2",
        "caffeine_per_day": "4",
        "sleep_hours": "6",
        "stress": "5",
        "water_glasses": "4",
        "alcohol_per_week": "",
        "intense_exercise": "no",
        "consent": "yes",
        **dict.fromkeys(RED_FLAG_QUESTIONS + OPTIONAL_RED_FLAG_QUESTIONS, "no"),
    }
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


# ---- seeded messages -------------------------------------------------------------------------------------------


def phone(i: int) -> str:
    """The number of the i-th seeded patient."""
    return f"+1555{i:07d}"


def patient_rows(n: int, now: datetime, *, start: int = 0) -> list[dict[str, Any]]:
    """`n` active SMS patients in UTC, with ids start+1 .. start+n (row dicts for a bulk insert)."""
    return [
        {
            "id": i + 1,
            "name": f"Pat {i}",
            "phone": phone(i),
            "channel": "sms",
            "timezone": "UTC",
            "language": "en",
            "status": "active",
            "sms_state": "ok",
            "email_state": "ok",
            "reply_token": f"t{i}",
            "sms_confirmed_at": now,  # entered by the clinic: confirmed
            "created_at": now,
            "updated_at": now,
        }
        for i in range(start, start + n)
    ]


def message_rows(
    n: int,
    now: datetime,
    *,
    key: str,
    due_at: datetime,
    expires_at: Callable[[int], datetime],
    start: int = 0,
    urgent: bool = True,
) -> list[dict[str, Any]]:
    """One scheduled reply acknowledgement to each of `patient_rows(n, now, start=start)`, dedupe keys
    "<key>:<i>" (row dicts for a bulk insert)."""
    return [
        {
            "patient_id": i + 1,
            "dedupe_key": f"{key}:{i}",
            "channel": "sms",
            "kind": MessageKind.SYSTEM,
            "template": "reply_ack",
            "context": {},
            "urgent": urgent,
            "status": MessageState.SCHEDULED,
            "due_at": due_at,
            "expires_at": expires_at(i),
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(start, start + n)
    ]


def insert_rows(url: str, patients: list[dict[str, Any]], messages: list[dict[str, Any]]) -> None:
    """Bulk-insert patients, then messages; on PostgreSQL the patient id sequence moves past the ids given."""
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(insert(Patient), patients)
        if engine.dialect.name == "postgresql" and patients:
            last = max(p["id"] for p in patients)
            c.execute(text("SELECT setval(pg_get_serial_sequence('patient', 'id'), :n)"), {"n": last})
        c.execute(insert(Message), messages)
    engine.dispose()


def seed_due_messages(url: str, n: int, *, key: str = "load", start: int = 0, urgent: bool = True) -> None:
    """`n` patients with one message each, due a minute ago by the wall clock and expiring in a day (urgent: the
    wall clock's hour does not matter)."""
    now = datetime.now(UTC)
    messages = message_rows(
        n,
        now,
        key=key,
        due_at=now - timedelta(minutes=1),
        expires_at=lambda _: now + timedelta(days=1),
        start=start,
        urgent=urgent,
    )
    insert_rows(url, patient_rows(n, now, start=start), messages)


def delivered_checkin(patient_id: int, sent: datetime, key: str, body: str | None = None) -> Message:
    """A check-in delivered to the patient at `sent`."""
    return Message(
        patient_id=patient_id,
        dedupe_key=key,
        channel="sms",
        kind=MessageKind.CHECKIN,
        template="checkin",
        status=MessageState.DELIVERED,
        due_at=sent,
        expires_at=sent + timedelta(days=1),
        sent_at=sent,
        body=body,
        created_at=sent,
        updated_at=sent,
    )


def open_escalation(
    rt: Any,
    *,
    name: str = "Ana Diaz",
    phone: str = "+13105550142",
    tier: str = "urgent",
    evidence: str = "my hand is weaker",
) -> int:
    """A clinic-entered SMS patient with one escalation opened through the real service (alerts included); its id."""
    from followup.models import Patient
    from followup.services.escalation import escalate

    now = rt.clock.now()
    with rt.db.session() as s:
        p = Patient(
            name=name,
            phone=phone,
            channel="sms",
            timezone="America/Los_Angeles",
            reply_token=f"p{int(phone[-8:]):016x}",
            enrolled_at=now,
            created_at=now,
            updated_at=now,
        )
        s.add(p)
        s.flush()
        esc, _ = escalate(
            rt,
            s,
            p,
            level="emergency" if tier == "emergency" else "red_flag",
            tier=tier,
            criteria=["breathing"] if tier == "emergency" else ["weakness"],
            evidence=[{"text": evidence}],
            source="reply",
            now=now,
        )
        s.commit()
        assert esc.id is not None
        return esc.id
