"""What the scale work must not change: the overview from its rollup says what a direct count says, keyset pages
cover every row once, the batched retention purge changes exactly the expired rows, and the overview job recounts
the non-responders once an hour. SQLite and PostgreSQL.
(How fast it is: bench/scale_db.py, never asserted here.)"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from factories import delivered_checkin
from sqlmodel import col, select

from followup import models as m
from followup.clock import FakeClock
from followup.core.figures import Overview, Rows, reply_mark, summarise, weeks_to
from followup.core.vocab import NOT_DELIVERED, WENT_OUT, MessageKind, MessageState
from followup.runtime import Runtime
from followup.services import digest, drafts, overview, patients, privacy, rollup, roster
from followup.services.privacy import PURGED, purge_old_texts


def _patient(s: Any, i: int, now: datetime, status: str = "active") -> int:
    p = m.Patient(
        name=f"Pat {i}",
        phone=f"+1555{i:07d}",
        channel="sms",
        timezone="UTC",
        status=status,
        reply_token=f"tok{i}",
        enrolled_at=now,
        created_at=now,
        updated_at=now,
    )
    s.add(p)
    s.flush()
    assert p.id is not None
    return p.id


def _reply(pid: int, at: datetime, key: str, trend: str | None = None, level: str = "none") -> m.Inbound:
    return m.Inbound(
        provider_key=key,
        channel="sms",
        patient_id=pid,
        sender="+15550000000",
        body="reply",
        meta={"trend": trend} if trend else {},
        level=level,
        status="processed",
        received_at=at,
    )


def _escalation(pid: int, at: datetime, tier: str, status: str = "open") -> m.Escalation:
    return m.Escalation(
        patient_id=pid, level="red_flag", tier=tier, status=status, source="reply", created_at=at, updated_at=at
    )


def _failed(pid: int, at: datetime, key: str) -> m.Message:
    msg = delivered_checkin(pid, at, key)
    msg.kind, msg.status, msg.updated_at = MessageKind.TIP, MessageState.FAILED, at
    return msg


def _scripted_weeks(rt: Runtime, start: datetime) -> None:
    """Three weeks of check-ins, answers (early, late, crossing midnight, never), trends, red flags, escalations of
    every tier and failed messages, for five patients."""
    with rt.db.session() as s:
        pids = [_patient(s, i, start) for i in range(5)]
        n = 0
        for day in range(21):
            for k, pid in enumerate(pids):
                at = start + timedelta(days=day, hours=9 + 3 * k)
                n += 1
                if (day + k) % 3 == 0:
                    s.add(delivered_checkin(pid, at, f"c{n}"))
                    delay = [timedelta(minutes=30), timedelta(hours=15), timedelta(hours=80), None][(day + k) % 4]
                    if delay is not None:
                        s.add(_reply(pid, at + delay, f"r{n}", ["better", "same", "worse"][day % 3]))
                if (day * 5 + k) % 11 == 0:
                    s.add(_escalation(pid, at, ["emergency", "urgent", "routine"][(day + k) % 3]))
                    s.add(_reply(pid, at, f"rf{n}", level="red_flag"))
                if (day + 2 * k) % 7 == 0:
                    s.add(_failed(pid, at + timedelta(hours=1), f"f{n}"))
        s.commit()


def _direct(rt: Runtime, weeks: int = 8) -> Overview[m.Patient]:
    """The overview counted straight from every row, as the page did before its rollup."""
    now = rt.clock.now()
    tz = ZoneInfo(rt.settings.clinic.timezone)
    week_list = weeks_to(now, tz, weeks)
    start = datetime.combine(week_list[0], datetime.min.time(), tzinfo=tz)
    with rt.db.session() as s:
        inbound = s.exec(select(m.Inbound.patient_id, m.Inbound.received_at, m.Inbound.level, m.Inbound.meta)).all()
        rows: Rows[m.Patient] = Rows(
            status_counts={},
            enrolled=0,
            unreachable=0,
            non_responders=0,
            escalations=list(
                s.exec(select(m.Escalation.created_at, m.Escalation.tier).where(m.Escalation.created_at >= start))
            ),
            active_statuses=[],
            checkins=list(
                s.exec(
                    select(m.Message.patient_id, m.Message.sent_at).where(
                        m.Message.kind == MessageKind.CHECKIN,
                        col(m.Message.status).in_(WENT_OUT),
                        col(m.Message.sent_at) >= start,
                        col(m.Message.sent_at) <= now,
                    )
                )
            ),
            failures=list(
                s.exec(
                    select(m.Message.updated_at).where(
                        col(m.Message.status).in_(NOT_DELIVERED), m.Message.updated_at >= start
                    )
                )
            ),
            replies=[(p, at, reply_mark(lv, mt)) for p, at, lv, mt in inbound if p is not None and at >= start],
            patients={},
        )
    return summarise(rows, week_list, tz, now)


def _figures(o: Overview[Any]) -> dict[str, Any]:
    return {
        "escalations": o.escalations_by_week,
        "response": o.response_by_week,
        "failures": o.failures_by_week,
        "trends": o.trend_by_week,
        "totals": (o.answered, o.asked, o.pending, o.failures),
    }


def test_the_overview_from_its_rollup_equals_a_direct_count(rt: Runtime, clock: FakeClock) -> None:
    """After scripted weeks, the job's rollup, later answers and a view days later, the overview (stored closed
    days + open days worked out at the view) says exactly what counting every row says."""
    start = clock.now() - timedelta(days=24)
    _scripted_weeks(rt, start)
    with rt.db.session() as s:
        pid = s.exec(select(m.Patient.id)).first()
        assert pid is not None
        s.add(delivered_checkin(pid, clock.now() - timedelta(hours=30), "late-checkin"))  # pending at the job's run
        s.commit()
    assert rollup.refresh(rt) > 0  # the job keeps the closed days, and the open ones as they are now
    with rt.db.session() as s:
        kept = len(s.exec(select(m.OverviewDay).where(m.OverviewDay.figure == rollup.CLOSED)).all())
    assert kept > 10
    assert _figures(overview.overview(rt)) == _figures(_direct(rt))
    clock.advance(timedelta(minutes=10))
    with rt.db.session() as s:  # after the job: an answer to a check-in still in its window, and a red flag
        s.add(_reply(pid, clock.now() - timedelta(minutes=1), "late-answer", "worse"))
        s.add(_escalation(pid, clock.now() - timedelta(minutes=5), "urgent"))
        s.commit()
    assert _figures(overview.overview(rt)) == _figures(_direct(rt))
    clock.advance(timedelta(days=5))  # the open days close; the view stores them and still agrees
    assert _figures(overview.overview(rt)) == _figures(_direct(rt))
    assert rollup.refresh(rt) == 0  # nothing left for the job


Lister = Callable[[Runtime, int, int | None], tuple[list[Any], int | None]]


def _roster(rt: Runtime, limit: int, before: int | None) -> tuple[list[Any], int | None]:
    _, page = roster.search(rt, None, None, limit, before)
    return [p.id for p in page.rows], page.next_before


def _roster_filtered(rt: Runtime, limit: int, before: int | None) -> tuple[list[Any], int | None]:
    _, page = roster.search(rt, "pat", "active", limit, before)
    return [p.id for p in page.rows], page.next_before


def _api_patients(rt: Runtime, limit: int, before: int | None) -> tuple[list[Any], int | None]:
    _, page = patients.search(rt, None, None, limit, 0, before)
    return [p.id for p in page.rows], page.next_before


def _escalations(rt: Runtime, limit: int, before: int | None) -> tuple[list[Any], int | None]:
    page = patients.escalations(rt, None, limit, 0, before)
    return [e.id for e in page.rows], page.next_before


def _audit(rt: Runtime, limit: int, before: int | None) -> tuple[list[Any], int | None]:
    page = overview.audit_page(rt, limit, before, "system")
    return [a.id for a in page.rows], page.next_before


@pytest.mark.parametrize(
    ("lister", "model", "where"),
    [
        (_roster, m.Patient, None),
        (_roster_filtered, m.Patient, m.Patient.status == "active"),
        (_api_patients, m.Patient, None),
        (_escalations, m.Escalation, None),
        (_audit, m.AuditLog, m.AuditLog.actor == "system"),
    ],
    ids=["patients", "patients active", "api patients", "api escalations", "audit log"],
)
@pytest.mark.parametrize("limit", [1, 4, 23, 50])
def test_keyset_pages_cover_every_row_once(rt: Runtime, lister: Lister, model: Any, where: Any, limit: int) -> None:
    """Following `next_before` from the first page lists every row once, newest first, and the last page has no
    cursor (a page size dividing the count exactly included)."""
    now = rt.clock.now()
    with rt.db.session() as s:
        for i in range(23):
            pid = _patient(s, i, now, status="active" if i % 3 else "completed")
            s.add(_escalation(pid, now, "routine"))
            s.add(m.AuditLog(at=now, actor="system" if i % 2 else "token:1", action="x", subject=f"patient:{pid}"))
        s.commit()
        expected = sorted(
            (r for r in s.exec(select(model.id).where(where if where is not None else True))), reverse=True
        )
    seen: list[int] = []
    before: int | None = None
    for _ in range(30):
        ids, before = lister(rt, limit, before)
        seen += ids
        if before is None:
            break
    assert seen == expected and before is None


def test_batched_purge_changes_exactly_the_expired_rows(rt: Runtime, clock: FakeClock) -> None:
    """In batches of 2, the purge blanks every finished message and settled reply older than the retention period
    and nothing else: not a newer one, not an old message still to send, not an old reply still to act on."""
    days = rt.settings.privacy.retention_days
    old, new = clock.now() - timedelta(days=days + 3), clock.now() - timedelta(days=days - 3)
    with rt.db.session() as s:
        pid = _patient(s, 1, old)
        rows: dict[str, Any] = {}
        for i in range(5):
            rows[f"old{i}"] = delivered_checkin(pid, old + timedelta(minutes=i), f"old{i}", body="hello")
        rows["old_failed"] = _failed(pid, old, "old_failed")
        rows["old_scheduled"] = delivered_checkin(pid, old, "old_scheduled", body="to send")
        rows["old_scheduled"].status = MessageState.SCHEDULED
        rows["new"] = delivered_checkin(pid, new, "new", body="hello")
        for i in range(3):
            rows[f"in_old{i}"] = _reply(pid, old + timedelta(minutes=i), f"in_old{i}")
        rows["in_pending"] = _reply(pid, old, "in_pending")
        rows["in_pending"].status = "received"
        rows["in_new"] = _reply(pid, new, "in_new")
        s.add_all(rows.values())
        s.commit()
        ids = {k: v.id for k, v in rows.items()}
    done = purge_old_texts(rt, batch=2)
    assert done == {"messages": 6, "inbound": 3}
    with rt.db.session() as s:
        msgs = {k: s.get(m.Message, i) for k, i in ids.items() if not k.startswith("in_")}
        ins = {k: s.get(m.Inbound, i) for k, i in ids.items() if k.startswith("in_")}
    blank = {k for k, x in {**msgs, **ins}.items() if x is not None and x.body == PURGED}
    assert blank == {"old0", "old1", "old2", "old3", "old4", "old_failed", "in_old0", "in_old1", "in_old2"}
    assert purge_old_texts(rt, batch=2) == {"messages": 0, "inbound": 0}


def test_purging_an_old_failure_does_not_make_it_this_weeks(rt: Runtime, clock: FakeClock) -> None:
    """A message that failed long ago keeps its date when the retention purge removes its text: the overview's
    failures this week stay 0 (the purge used to set updated_at, and the old failure counted as new)."""
    old = clock.now() - timedelta(days=rt.settings.privacy.retention_days + 30)
    with rt.db.session() as s:
        pid = _patient(s, 0, old)
        s.add(_failed(pid, old, "old-failure"))
        s.commit()
    assert purge_old_texts(rt)["messages"] == 1
    with rt.db.session() as s:
        msg = s.exec(select(m.Message).where(m.Message.dedupe_key == "old-failure")).one()
        assert msg.body == PURGED and msg.updated_at == old
    assert overview.overview(rt).failures == 0
    assert _figures(overview.overview(rt)) == _figures(_direct(rt))


def test_erase_finds_replies_from_before_enrolment_and_unreachable_alerts(rt: Runtime) -> None:
    """Erasure still reaches what only the patient's number or id names (a reply before they enrolled, the
    alert that they cannot be reached), now through indexed lookups, and leaves other patients' rows alone."""
    now = rt.clock.now()
    with rt.db.session() as s:
        pid, other = _patient(s, 1, now), _patient(s, 2, now)
        early = _reply(pid, now, "early")
        early.patient_id, early.sender = None, "+15550000001"  # the number _patient gives patient 1
        s.add(early)
        s.add(_reply(other, now, "theirs"))
        s.add(
            m.Message(
                dedupe_key=f"unreachable:{pid}:sms",
                channel="sms",
                to="+13105550199",
                kind="alert",
                template=drafts.UNREACHABLE_ALERT,
                due_at=now,
                expires_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        s.commit()
    counts = privacy.erase_patient(rt, pid, "test")
    assert counts["inbound"] == 1 and counts["messages"] == 1 and counts["patients"] == 1
    with rt.db.session() as s:
        assert [i.provider_key for i in s.exec(select(m.Inbound))] == ["theirs"]
        assert s.get(m.Patient, other) is not None


# (status, phone, sms_state, email, email_state) -> unreachable?
REACH = [
    ("active", "+1555999001", "ok", None, "ok", False),
    ("active", "+1555999002", "opted_out", None, "ok", True),
    ("paused", "+1555999003", "invalid", "a@x.example", "ok", False),
    ("escalated", "+1555999004", "invalid", "b@x.example", "suppressed", True),
    ("active", None, "ok", "c@x.example", "opted_out", True),
    ("active", None, "ok", "d@x.example", "ok", False),
    ("completed", "+1555999007", "opted_out", None, "ok", False),
    ("unenrolled", None, "ok", "e@x.example", "suppressed", False),
]


def test_unreachable_patients_are_those_still_followed_up_with_no_working_channel(rt: Runtime) -> None:
    """The roster's filter, the digest's list and the overview's count (one clause, served on PostgreSQL by the
    partial index ix_patient_unreachable) hold exactly the followed-up patients whose every channel is unusable."""
    now = rt.clock.now()
    with rt.db.session() as s:
        ids = {}
        for i, (status, phone, sms, email, mail, _) in enumerate(REACH):
            pid = _patient(s, i, now, status)
            p = s.get(m.Patient, pid)
            assert p is not None
            p.phone, p.sms_state, p.email, p.email_state = phone, sms, email, mail
            ids[i] = pid
        s.commit()
        found = set(s.exec(select(m.Patient.id).where(roster.unreachable_clause())))
    expected = {ids[i] for i, row in enumerate(REACH) if row[-1]}
    assert found == expected
    total, page = roster.search(rt, None, "unreachable")
    assert total == len(expected) and {p.id for p in page.rows} == expected
    with rt.db.session() as s:
        assert [u["id"] for u in digest.build_digest(rt, s, now)["unreachable"]] == sorted(expected)
    assert overview.overview(rt).unreachable == len(expected)


def test_the_unreachable_clause_can_be_served_by_its_partial_index(rt: Runtime) -> None:
    """PostgreSQL can prove the clause implies ix_patient_unreachable's predicate (it is spelled with literals, not
    bound parameters): with sequential scans off, the digest's query reads that index."""
    if rt.db.engine.dialect.name != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    stmt = select(m.Patient.id).where(roster.unreachable_clause()).order_by(col(m.Patient.id))
    with rt.db.engine.connect() as c:
        c.exec_driver_sql("SET enable_seqscan = off")
        compiled = stmt.compile(c, compile_kwargs={"literal_binds": True})
        plan = "\n".join(r[0] for r in c.exec_driver_sql(f"EXPLAIN {compiled}"))
    assert "ix_patient_unreachable" in plan, plan


@pytest.mark.parametrize(("minute", "kept"), [(5, 0), (25, 7)])
def test_the_overview_job_recounts_non_responders_once_an_hour(
    rt: Runtime, clock: FakeClock, minute: int, kept: int
) -> None:
    """The job recounts the non-responders only in its run in the first minutes past the hour; other runs keep the
    last count (here a stale 7; nobody is silent, so a recount gives 0)."""
    with rt.db.session() as s:
        s.add(m.OverviewDay(day=rollup.TOTALS, figure=rollup.SILENT, n=7))
        s.commit()
    clock.set(clock.now().replace(minute=minute) + timedelta(hours=1))
    rollup.refresh(rt)
    assert rollup.silent(rt) == kept


@pytest.mark.parametrize(("hours_on", "counted"), [(1, 0), (rollup.REBUILD_HOURS, 1)])
def test_the_overview_job_rebuilds_the_open_days_every_few_hours(
    rt: Runtime, clock: FakeClock, hours_on: int, counted: int
) -> None:
    """An escalation stored after the job's run but dated before it (what carrying forward cannot see) reaches the
    open days' snapshot at the job's next rebuild (the first minutes of every REBUILD_HOURS-th hour), not before."""
    start = clock.now().astimezone(ZoneInfo("UTC"))
    t0 = start.replace(hour=0, minute=20, second=0, microsecond=0) + timedelta(days=1)
    clock.set(t0)
    with rt.db.session() as s:
        pid = _patient(s, 1, t0 - timedelta(days=1))
        s.commit()
    rollup.refresh(rt)
    with rt.db.session() as s:
        s.add(_escalation(pid, t0 - timedelta(minutes=5), "emergency"))
        s.commit()
    clock.set(t0.replace(minute=5) + timedelta(hours=hours_on))
    rollup.refresh(rt)
    with rt.db.session() as s:
        taken, days = rollup.open_snapshot(s, t0.date() - timedelta(days=7), clock.now().date())
    assert taken == clock.now().replace(microsecond=0)
    assert sum(f["escalation:emergency"] for f in days.values()) == counted


# What happens after the job's snapshot (t0): (minutes after t0 the row is dated, kind, argument). Check-ins are
# dated in hours before t0 when negative. The view is 10 minutes after t0.
AFTER_SNAPSHOT: dict[str, list[tuple[float, str, str]]] = {
    "an answer to a check-in pending at the snapshot": [(-30 * 60, "checkin", "c"), (5, "reply", "better")],
    "a check-in whose reply window runs out after it": [(-72 * 60 + 4, "checkin", "c")],
    "a reply after the window: not an answer": [(-80 * 60, "checkin", "c"), (5, "reply", "same")],
    "a check-in sent and answered after it": [(2, "checkin", "c"), (4, "reply", "worse")],
    "a check-in sent after it, not answered yet": [(3, "checkin", "c")],
    "an escalation and a failure after it": [(3, "escalation", "emergency"), (6, "failed", "f")],
    "two answers to one check-in, one on each side": [
        (-20 * 60, "checkin", "c"),
        (-60, "reply", "same"),
        (7, "reply", "better"),
    ],
    "a red flag reply after it (no trend)": [(-10 * 60, "checkin", "c"), (8, "red_flag", "")],
}


@pytest.mark.parametrize("events", AFTER_SNAPSHOT.values(), ids=AFTER_SNAPSHOT.keys())
def test_the_open_days_from_the_snapshot_equal_a_direct_count(
    rt: Runtime, clock: FakeClock, events: list[tuple[float, str, str]]
) -> None:
    """The job keeps the open days as they are; ten minutes later, with rows dated before and after its run, the
    view (the snapshot plus what changed since) says what counting every row says, and it did use the snapshot;
    the job's next run carries the snapshot forward to what a rebuild from the rows gives."""
    _scripted_weeks(rt, clock.now() - timedelta(days=24))
    t0 = clock.now()
    with rt.db.session() as s:
        pid = _patient(s, 99, t0)
        s.commit()

    def write(before_t0: bool) -> None:
        with rt.db.session() as s:
            for n, (minutes, kind, arg) in enumerate(events):
                at = t0 + timedelta(minutes=minutes)
                if (at < t0) != before_t0:
                    continue
                key = f"ev{n}"
                if kind == "checkin":
                    s.add(delivered_checkin(pid, at, key))
                elif kind == "reply":
                    s.add(_reply(pid, at, key, arg))
                elif kind == "red_flag":
                    s.add(_reply(pid, at, key, level="red_flag"))
                elif kind == "escalation":
                    s.add(_escalation(pid, at, arg))
                else:
                    s.add(_failed(pid, at, key))
            s.commit()

    write(before_t0=True)
    rollup.refresh(rt)
    with rt.db.session() as s:
        taken, days = rollup.open_snapshot(s, t0.date() - timedelta(days=30), t0.date())
    assert taken == t0.replace(microsecond=0) and days
    clock.advance(timedelta(minutes=10))
    write(before_t0=False)
    assert _figures(overview.overview(rt)) == _figures(_direct(rt))
    clock.advance(timedelta(minutes=5))  # the job's next run (not the hourly one) carries its snapshot forward
    assert clock.now().minute >= rollup.SILENT_MINUTES
    rollup.refresh(rt)
    tz = ZoneInfo(rt.settings.clinic.timezone)
    with rt.db.session() as s:
        taken, carried = rollup.open_snapshot(s, t0.date() - timedelta(days=30), clock.now().date())
        assert taken == clock.now().replace(microsecond=0)
        rebuilt = rollup.compute_days(s, sorted(carried), tz, clock.now(), upto=taken)
    assert {d: +f for d, f in carried.items()} == {d: +rebuilt.get(d, Counter()) for d in carried}
    assert _figures(overview.overview(rt)) == _figures(_direct(rt))


def _visits(rt: Runtime, n: int) -> list[int]:
    """`n` booked visits over the next days (and one cancelled, one yesterday, one past the horizon): their ids in
    time order."""
    now = rt.clock.now()
    with rt.db.session() as s:
        pid = _patient(s, 1, now)
        rows = []
        for i in range(n + 3):
            esc = _escalation(pid, now, "routine")
            s.add(esc)
            s.flush()
            assert esc.id is not None
            at = now + timedelta(hours=3 + 7 * i) if i < n else now + timedelta(days=[-1, 60, 2][i - n])
            a = m.Appointment(
                escalation_id=esc.id,
                patient_id=pid,
                starts_at=at,
                ends_at=at + timedelta(minutes=30),
                status="cancelled" if i == n + 2 else "booked",
                booked_by="staff:1",
                created_at=now,
                updated_at=now,
            )
            s.add(a)
            s.flush()
            rows.append(a)
        s.commit()
        return [a.id for a in rows[:n] if a.id is not None]


@pytest.mark.parametrize("limit", [1, 3, 7, 100])
def test_visit_pages_cover_every_visit_once_both_ways(rt: Runtime, limit: int) -> None:
    """Following `next_after` from the first page lists every booked visit in the horizon once, in time order; then
    following `prev_before` back lists them again; the ends have no cursor (cancelled, past and later visits
    never appear)."""
    from followup.services import visits

    expected = _visits(rt, 11)
    pages, after = [], None
    for _ in range(30):
        page = visits.upcoming_visits(rt, 28, limit, after=after)
        pages.append([v.appointment_id for d in page.days for v in d.visits])
        after = page.next_after
        if after is None:
            break
    assert [i for p in pages for i in p] == expected and all(len(p) <= limit for p in pages)
    back, before = [], page.prev_before
    while before is not None:
        page = visits.upcoming_visits(rt, 28, limit, before=before)
        back = [v.appointment_id for d in page.days for v in d.visits] + back
        before = page.prev_before
    assert back + pages[-1] == expected


def test_the_overview_trends_read_past_a_chunk_of_replies(rt: Runtime, clock: FakeClock) -> None:
    """When the latest TREND_CHUNK replies name fewer than TRENDS_SHOWN patients, the overview reads on (keyset on
    received_at, id) and lists the same patients as reading every reply newest first."""
    now = clock.now()
    with rt.db.session() as s:
        pids = [_patient(s, i, now) for i in range(40)]
        rows = [(pids[k % 10], now - timedelta(minutes=k)) for k in range(overview.TREND_CHUNK + 10)]
        rows += [(pids[10 + k], now - timedelta(hours=5, minutes=k)) for k in range(30)]
        rows += [(pids[k % 40], now - timedelta(hours=6)) for k in range(40)]  # ties on received_at
        s.add_all(_reply(pid, at, f"t{n}", "better") for n, (pid, at) in enumerate(rows))
        s.commit()
        everything = s.exec(
            select(m.Inbound.patient_id).order_by(col(m.Inbound.received_at).desc(), col(m.Inbound.id).desc())
        ).all()
    expected = list(dict.fromkeys(everything))[:30]
    got = [p.id for p, _ in overview.overview(rt).trends]
    assert sorted(got) == sorted(expected) and len(got) == 30
