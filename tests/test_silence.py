"""The maintained "silent since" (services/silence.py) gives the answers the full scans gave, and the services keep
it: a matched reply, a dispatched batch of check-ins. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from alembic import command
from factories import delivered_checkin, insert_rows, message_rows, patient_rows
from fastapi.testclient import TestClient
from sqlmodel import Session, col, func, select
from test_inbound import Phone

from followup.clock import FakeClock
from followup.core.vocab import NOT_FINISHED, WENT_OUT, MessageKind, MessageState
from followup.db import alembic_config, upgrade
from followup.models import Inbound, Message, Patient
from followup.runtime import Runtime
from followup.services import roster, silence
from followup.services.dispatch import Dispatcher

# Each patient's history, in days before the test's `now`: check-ins ("c" delivered, "u" undelivered after
# sending, "f" failed at sending: never sent), replies ("r"); and the patient's status.
HISTORIES: list[tuple[str, list[tuple[str, float]], str]] = [
    ("two unanswered", [("c", 10), ("c", 3)], "active"),
    ("answered after the first", [("c", 10), ("r", 9), ("c", 3)], "active"),
    ("answered at the very time of the first", [("r", 10), ("c", 10), ("c", 3)], "active"),
    ("second still in its grace", [("c", 10), ("c", 1)], "active"),
    ("three, the last in its grace", [("c", 10), ("c", 6), ("c", 1)], "active"),
    ("one undelivered of two", [("c", 10), ("u", 3)], "active"),
    ("undelivered, then two", [("u", 12), ("c", 10), ("c", 3)], "active"),
    ("failed at sending", [("f", 12), ("c", 3)], "active"),
    ("replied, then three", [("r", 20), ("c", 10), ("c", 6), ("c", 3)], "active"),
    ("replied recently", [("c", 10), ("c", 6), ("r", 0.5)], "active"),
    ("paused, silent", [("c", 10), ("c", 3)], "paused"),
    ("unenrolled, silent", [("c", 10), ("c", 3)], "unenrolled"),
    ("never asked", [("r", 3)], "active"),
]


def _old_scan(s: Session, now: datetime) -> dict[int, datetime]:
    """The non-responders as roster.non_responders found them before the maintained column: every check-in of
    every followed-up patient, then each candidate's latest reply."""
    rows = s.exec(
        select(Message.patient_id, Message.sent_at)
        .join(Patient, col(Patient.id) == Message.patient_id)
        .where(
            Message.kind == MessageKind.CHECKIN,
            col(Message.status).in_(WENT_OUT),
            col(Message.sent_at).is_not(None),
            col(Message.sent_at) <= now - silence.REPLY_GRACE,
            col(Patient.status).in_(NOT_FINISHED),
        )
        .order_by(col(Message.patient_id), col(Message.sent_at))
    ).all()
    times: dict[int, list[datetime]] = {}
    for pid, at in rows:
        assert pid is not None and at is not None
        times.setdefault(pid, []).append(at)
    out = {}
    for pid, ts in times.items():
        if len(ts) < 2:
            continue
        last = s.exec(select(func.max(Inbound.received_at)).where(Inbound.patient_id == pid)).one()
        if last is None or last <= ts[-2]:
            out[pid] = ts[-1]
    return out


def _patient(s: Session, name: str, status: str, now: datetime, n: int) -> int:
    p = Patient(
        name=name,
        phone=f"+1310555{n:04d}",
        channel="sms",
        timezone="UTC",
        status=status,
        reply_token=f"silence{n}",
        sms_confirmed_at=now,
        created_at=now,
        updated_at=now,
    )
    s.add(p)
    s.flush()
    assert p.id is not None
    return p.id


def _play(rt: Runtime, now: datetime) -> dict[str, int]:
    """Every history, written in time order, calling the hooks the services call at each event."""
    ids: dict[str, int] = {}
    events: list[tuple[float, int, str, int]] = []
    with rt.db.session() as s:
        for n, (name, history, status) in enumerate(HISTORIES):
            ids[name] = _patient(s, name, status, now, n)
            events += [(-days, k, kind, ids[name]) for k, (kind, days) in enumerate(history)]
        for days, k, kind, pid in sorted(events):
            at = now + timedelta(days=days)
            if kind == "r":
                s.add(
                    Inbound(
                        provider_key=f"r{pid}:{k}",
                        channel="sms",
                        patient_id=pid,
                        sender="+1",
                        body="ok",
                        status="processed",
                        received_at=at,
                    )
                )
                s.flush()
                silence.replied(s, pid, at)
                continue
            msg = delivered_checkin(pid, at, f"c{pid}:{k}")
            if kind == "f":
                msg.status, msg.sent_at = MessageState.FAILED, None
            s.add(msg)
            s.flush()
            if kind != "f":
                silence.checkins_sent(s, [pid])
            if kind == "u":  # the provider's later report: undelivered (the column keeps counting it)
                msg.status = MessageState.UNDELIVERED
                s.flush()
        s.commit()
    return ids


@pytest.mark.parametrize("hours_later", [0, 12, 30, 60, 24 * 8])
def test_non_responders_equal_the_old_scan(rt: Runtime, clock: FakeClock, hours_later: int) -> None:
    """For every history, now and later as check-ins leave their grace, the digest's list and the dashboard's
    filter name the patients (and last check-ins) the full scan named."""
    ids = _play(rt, clock.now())
    clock.advance(timedelta(hours=hours_later))
    now = clock.now()
    with rt.db.session() as s:
        expected = _old_scan(s, now)
        got = {x.patient_id: x.last_checkin_at for x in roster.non_responders(s, now)}
    assert got == expected
    total, page = roster.search(rt, None, "not_responding", limit=100)
    assert {p.id for p in page.rows} == set(expected) and total == len(expected)
    if hours_later == 0:  # the cases the table was written for
        assert {name for name, pid in ids.items() if pid in expected} == {
            "two unanswered",
            "answered at the very time of the first",
            "three, the last in its grace",
            "undelivered, then two",
            "replied, then three",
            "paused, silent",  # paused is still followed up
        }


def test_the_kept_columns_equal_a_rebuild(rt: Runtime, clock: FakeClock) -> None:
    """What the hooks kept event by event equals working both columns out again from the rows (the backfill)."""
    _play(rt, clock.now())
    with rt.db.session() as s:
        kept = s.exec(select(Patient.id, Patient.last_reply_at, Patient.silent_since).order_by(Patient.id)).all()
        silence.rebuild(s, [pid for pid, _, _ in kept if pid is not None])
        s.commit()
    with rt.db.session() as s:
        rebuilt = s.exec(select(Patient.id, Patient.last_reply_at, Patient.silent_since).order_by(Patient.id)).all()
    assert kept == rebuilt
    assert any(since is not None for _, _, since in kept) and any(r is not None for _, r, _ in kept)


def test_a_reply_through_the_webhook_ends_the_silence(rt: Runtime, client: TestClient, clock: FakeClock) -> None:
    """A silent patient's text, matched by the inbound service, sets last_reply_at and clears silent_since."""
    now = clock.now()
    with rt.db.session() as s:
        pid = _patient(s, "Sam Silent", "active", now, 142)  # +13105550142: the number Phone texts from
        for n, days in enumerate((10, 3)):
            s.add(delivered_checkin(pid, now - timedelta(days=days), f"ci{n}"))
        s.flush()
        silence.rebuild(s, [pid])
        s.commit()
    with rt.db.session() as s:
        assert [x.patient_id for x in roster.non_responders(s, now)] == [pid]
    assert Phone(client, rt).send("still the same").status_code == 200
    with rt.db.session() as s:
        p = s.get(Patient, pid)
        received = s.exec(select(Inbound.received_at).where(Inbound.patient_id == pid)).one()
        assert p is not None and p.last_reply_at == received and p.silent_since is None
        assert roster.non_responders(s, clock.now()) == []


def test_dispatched_checkins_set_silent_since(rt: Runtime, db_url: str, clock: FakeClock) -> None:
    """Two check-ins sent by the dispatcher, none answered: silent_since is when the second went out."""
    now = clock.now()
    rows = message_rows(2, now, key="ci", due_at=now - timedelta(minutes=1), expires_at=lambda _: now + timedelta(1))
    for i, row in enumerate(rows):
        row["patient_id"], row["kind"] = 1, MessageKind.CHECKIN
        row["dedupe_key"] = f"ci:{i}"
    insert_rows(db_url, patient_rows(1, now), rows[:1])
    Dispatcher(rt).run_once()
    with rt.db.session() as s:
        assert s.exec(select(Patient.silent_since)).one() is None  # one check-in is not silence yet
    clock.advance(timedelta(days=2))
    later = clock.now()
    rows[1]["due_at"], rows[1]["expires_at"] = later - timedelta(minutes=1), later + timedelta(days=1)
    with rt.db.session() as s:
        s.add(Message(**rows[1]))
        s.commit()
    Dispatcher(rt).run_once()
    with rt.db.session() as s:
        sent = s.exec(select(Message.sent_at).where(Message.dedupe_key == "ci:1")).one()
        assert sent is not None and s.exec(select(Patient.silent_since)).one() == sent


def test_the_migration_backfills_what_the_hooks_keep(rt: Runtime, clock: FakeClock, db_url: str) -> None:
    """Migration e7b2c9d4a1f6 run over existing rows fills both columns as the hooks kept them event by event."""
    _play(rt, clock.now())
    read = select(Patient.id, Patient.last_reply_at, Patient.silent_since).order_by(Patient.id)
    with rt.db.session() as s:
        kept = s.exec(read).all()
    rt.db.dispose()
    try:
        command.downgrade(alembic_config(db_url), "e7b2c9d4a1f6-1")  # drops the columns
    finally:
        upgrade(db_url)  # adds them back and backfills
    with rt.db.session() as s:
        assert s.exec(read).all() == kept


@pytest.mark.parametrize("limit", [1, 2, 4, 50])
def test_not_responding_pages_cover_every_non_responder_once(rt: Runtime, clock: FakeClock, limit: int) -> None:
    """Following `next_before`, the "Not responding" list names every non-responder once, newest first, with the
    same total on every page, and the last page has no cursor."""
    _play(rt, clock.now())
    with rt.db.session() as s:
        expected = sorted(_old_scan(s, clock.now()), reverse=True)
    seen: list[int | None] = []
    before: int | None = None
    for _ in range(20):
        total, page = roster.search(rt, None, "not_responding", limit=limit, before=before)
        assert total == len(expected)
        seen += [p.id for p in page.rows]
        before = page.next_before
        if before is None:
            break
    assert seen == expected and len(expected) == 6


def test_the_not_responding_candidates_are_a_backward_range_on_their_index(rt: Runtime, clock: FakeClock) -> None:
    """On PostgreSQL the "Not responding" list reads its candidates as an index-only backward range on
    ix_patient_silent stopped by the LIMIT (the literals let the planner prove the index's predicate), never the
    silent_since range that tested every non-responder before sorting them."""
    if rt.db.engine.dialect.name != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    with rt.db.engine.connect() as c:
        c.exec_driver_sql("SET enable_seqscan = off")
        c.exec_driver_sql("SET enable_bitmapscan = off")
        compiled = silence.candidates(clock.now(), before=10**6).compile(c, compile_kwargs={"literal_binds": True})
        plan = "\n".join(r[0] for r in c.exec_driver_sql(f"EXPLAIN {compiled}"))
    assert "Scan Backward using ix_patient_silent" in plan and "Sort" not in plan, plan


@pytest.mark.parametrize("listed", [2, 6, 50])
def test_the_digest_lists_the_newest_non_responders_and_counts_them_all(
    rt: Runtime, clock: FakeClock, listed: int
) -> None:
    """The digest names the newest `listed` non-responders (ids, newest first, with their last check-in) and counts
    all six, and links to the dashboard's full list."""
    from followup.services.digest import build_digest

    _play(rt, clock.now())
    with rt.db.session() as s:
        expected = _old_scan(s, clock.now())
        digest = build_digest(rt, s, clock.now(), listed=listed)
    newest = sorted(expected, reverse=True)[:listed]
    assert [x["id"] for x in digest["non_responders"]] == newest
    assert [x["last_checkin"] for x in digest["non_responders"]] == [expected[p].date().isoformat() for p in newest]
    assert digest["non_responders_count"] == "6" and digest["non_responders_url"].endswith("status=not_responding")
