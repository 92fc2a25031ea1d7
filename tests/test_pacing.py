"""Pacing shared through the database (followup/services/pacing.py) on SQLite and PostgreSQL: the one `UPDATE ...
RETURNING` gives what followup/core/pacing.py's `grant` gives, case by case; several pacers (each with its own
engine, as worker processes have) draw slots from one row that never overlap; and a dispatcher puts the messages
its sender has no slot for back in the queue untried, in the transaction that would have marked them `sending`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise

import pytest
from factories import insert_rows, message_rows, patient_rows
from sqlmodel import select

from followup import models as m
from followup.core.pacing import Pace, grant
from followup.core.vocab import MessageState
from followup.db import Database
from followup.runtime import Runtime
from followup.services.dispatch import Dispatcher, PassReport
from followup.services.pacing import SharedPacer
from followup.settings import send_in_flight_seconds

SENDER = "+15005550006"


class Wall:
    """A wall clock that moves only when told to (the pacer reads seconds since the epoch)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def seed(rt: Runtime, n: int) -> None:
    """`n` urgent SMS messages due now by the runtime's clock, one to each of `n` patients."""
    now = rt.clock.now()
    rows = message_rows(n, now, key="pace", due_at=now, expires_at=lambda _: now + timedelta(days=1))
    insert_rows(rt.settings.database.url, patient_rows(n, now), rows)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    d = Database(db_url)
    yield d
    d.dispose()


# Each case is a sequence of asks on one sender's row: (clock, want, horizon).
SEQUENCES = {
    "fresh row, all fit": [(1_000.0, 5, 60.0)],
    "queued behind itself": [(1_000.0, 5, 60.0), (1_000.2, 5, 60.0), (1_000.3, 2, 60.0)],
    "horizon cuts the grant": [(1_000.0, 30, 1.0), (1_000.5, 30, 1.0)],
    "nothing left within the horizon": [(1_000.0, 50, 10.0), (1_000.1, 5, 1.0)],
    "quiet spell refills, saves nothing up": [(1_000.0, 3, 60.0), (1_100.0, 3, 60.0)],
    "clock behind the schedule": [(1_000.0, 10, 60.0), (999.0, 2, 60.0)],
    "zero horizon": [(1_000.0, 4, 0.0), (1_000.0, 4, 0.0), (1_000.25, 4, 0.0)],
}


@pytest.mark.parametrize("burst", [1, 3])
@pytest.mark.parametrize("name", list(SEQUENCES))
def test_database_grants_what_the_pure_rule_grants(db: Database, name: str, burst: int) -> None:
    """The SQL statement and core.pacing.grant agree on every ask of a sequence: same count, same slots."""
    pace = Pace(4.0, burst)
    wall = Wall(0.0)
    pacer = SharedPacer(pace, wall=wall)
    tat: float | None = None
    for now, want, horizon in SEQUENCES[name]:
        wall.t = now
        expected = grant(pace, tat, now, want, horizon)
        with db.session() as s:
            slots = pacer.reserve(s, SENDER, want, horizon)
            s.commit()
        assert slots == pytest.approx(expected.slots(pace, now), abs=1e-6), (now, want, horizon)
        tat = expected.tat
    with db.session() as s:
        row = s.get(m.SenderPace, SENDER)
        assert row is not None and row.tat == pytest.approx(tat, abs=1e-6)


def test_a_grant_not_committed_takes_nothing(db: Database) -> None:
    """Slots reserved in a transaction that rolls back are free for the next ask."""
    pace = Pace(10.0)
    pacer = SharedPacer(pace, wall=Wall(1_000.0))
    with db.session() as s:
        pacer.reserve(s, SENDER, 1, 60.0)  # the row exists from here on
        s.commit()
    with db.session() as s:
        assert len(pacer.reserve(s, SENDER, 20, 60.0)) == 20
        s.rollback()
    with db.session() as s:
        assert pacer.reserve(s, SENDER, 1, 60.0) == pytest.approx([1_000.1])


def test_pacers_with_their_own_engines_never_share_a_slot(db_url: str) -> None:
    """Four pacers, each with its own engine (as four worker processes), ask at once from threads: the slots they
    get for one sender are all an interval apart, and nothing is granted twice."""
    pace = Pace(100.0)
    wall = Wall(5_000.0)
    dbs = [Database(db_url) for _ in range(4)]
    got: list[list[float]] = [[] for _ in dbs]
    barrier = threading.Barrier(len(dbs))

    def worker(i: int) -> None:
        pacer = SharedPacer(pace, wall=wall)
        barrier.wait()
        for _ in range(10):
            with dbs[i].session() as s:
                got[i] += pacer.reserve(s, SENDER, 7, 3600.0)
                s.commit()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(dbs))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for d in dbs:
            d.dispose()
    slots = sorted(x for g in got for x in g)
    assert len(slots) == 4 * 10 * 7
    gaps = [b - a for a, b in pairwise(slots)]
    assert min(gaps) == pytest.approx(pace.interval, abs=1e-6)


def test_dispatcher_puts_back_untried_what_its_sender_has_no_slot_for(rt: Runtime) -> None:
    """Another worker holds the sender's slots for most of the lease: the batch gets the few left, ordered by slot,
    and the rest go back to the queue untried (attempts unchanged); the pass stops claiming."""
    d = Dispatcher(rt, owner="worker-a")
    try:
        rate = rt.settings.dispatch.per_sender_per_second * 0.9
        wall = Wall(10_000.0)
        d.pacer = SharedPacer(Pace(rate), wall=wall, sleep=lambda _s: None)
        sender = rt.transports["sms"].sender
        n = 12
        seed(rt, n)
        cfg = rt.settings
        in_flight = send_in_flight_seconds(cfg.twilio.timeout_seconds, cfg.dispatch.lookup_settle_seconds)
        send_by = cfg.dispatch.lease_seconds - in_flight
        # The other worker's grants run until 2.5 intervals before this batch's last useful moment.
        with rt.db.session() as s:
            s.add(m.SenderPace(sender=sender, tat=wall.t + send_by - 2.5 / rate, granted=0))
            s.commit()
        report = PassReport()
        ids = d.claim()
        jobs = d.prepare(ids, report)
        assert len(ids) == n
        assert len(jobs) == 3 and report.paced == n - 3
        assert [j.start_at for j in jobs] == sorted(j.start_at for j in jobs)
        assert all(j.start_at <= wall.t + send_by for j in jobs)
        with rt.db.session() as s:
            rows = list(s.exec(select(m.Message)).all())
        back = [r for r in rows if r.status == MessageState.SCHEDULED]
        assert len(back) == n - 3
        assert all(r.attempts == 0 and r.lease_owner is None and "no sending slot" in (r.reason or "") for r in back)
        assert sum(r.status == MessageState.SENDING for r in rows) == 3
    finally:
        d.close()


def test_pass_claims_no_more_than_its_senders_have_slots_for(rt: Runtime) -> None:
    """Another worker's grants leave the sender no slot within the lease: the pass claims nothing (rather than
    claiming, rendering and putting back); with room for 3, it claims 3."""
    d = Dispatcher(rt, owner="worker-a")
    try:
        d.batch_limit = 5
        rate = rt.settings.dispatch.per_sender_per_second * 0.9
        wall = Wall(10_000.0)
        d.pacer = SharedPacer(Pace(rate), wall=wall, sleep=lambda _s: None)
        seed(rt, 20)
        with rt.db.session() as s:
            for transport in rt.transports.values():  # the email sender is busy too: only SMS slots count below
                s.add(m.SenderPace(sender=transport.sender, tat=wall.t + 3600.0, granted=0))
            s.commit()
        report = d.run_once()
        assert (report.claimed, report.paced, report.sent) == (0, 0, 0)
        horizon = d._horizon("sms")
        with rt.db.session() as s:
            row = s.get(m.SenderPace, rt.transports["sms"].sender)
            assert row is not None
            row.tat = wall.t + horizon - 2.5 / rate  # three slots left: at -2.5, -1.5 and -0.5 intervals
            s.add(row)
            s.commit()
        report = d.run_once()
        assert (report.claimed, report.paced, report.sent) == (3, 0, 3)
    finally:
        d.close()


def test_sends_that_start_late_are_spaced_again_in_the_process() -> None:
    """Two sends whose slots have both passed (a thread held up) start an interval apart, not together; a send on
    time waits for its slot only."""
    wall = Wall(100.0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        wall.t += seconds

    pacer = SharedPacer(Pace(10.0), wall=wall, sleep=sleep)
    pacer.wait(SENDER, 99.8)  # late: goes at once
    pacer.wait(SENDER, 99.9)  # late too: an interval after the previous start
    pacer.wait(SENDER, 100.5)  # on time: its own slot
    pacer.wait("clinic@example.org", 100.0)  # another sender is paced on its own
    assert slept == [0.1, 0.4]
