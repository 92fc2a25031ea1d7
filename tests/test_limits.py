"""Flood limits shared through the database (followup/services/limits.py) on SQLite and PostgreSQL: the one
`INSERT ... ON CONFLICT DO UPDATE ... RETURNING` gives what followup/core/limits.py's `take` gives, case by case;
two app instances on one database (as two web processes) share one sender's bucket; threads taking from one bucket
at once are granted exactly its capacity; keys are keyed hashes; rows of long-full buckets are pruned."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from factories import triage_body
from fastapi.testclient import TestClient
from signed import post_sms, sms_fields, webhook_settings
from sqlmodel import col, select

from followup import models as m
from followup.clock import FakeClock
from followup.core.limits import Bucket, Decision, Limit, take
from followup.core.triage import TriageIn
from followup.runtime import Runtime, build_runtime
from followup.services.enrollment import submit_triage
from followup.services.limits import FORGET_FLOOD, FORGET_FULL, SharedLimits, key
from followup.transports.recording import RecordingTransport
from followup.web.app import create_app

PHONE = "+13105550142"
T0 = 1_764_000_000.0

# Each case: a limit and the clock of each take on one sender's bucket.
SEQUENCES = {
    "burst then refused": (Limit.per_minute(3), [0, 0, 0, 0, 0]),
    "refill after an interval, not before": (Limit.per_minute(3), [0, 0, 0, 19.9, 20, 20]),
    "flood ends with its count": (Limit.per_minute(2), [0, 0, 0, 0, 30, 30, 90]),
    "quiet spell saves nothing up": (Limit.per_minute(3), [0, 600, 600, 600, 600]),
    "clock behind the schedule": (Limit.per_minute(2), [60, 60, 0, 0, 120]),
    "float intervals keep the whole burst": (Limit.per_minute(7), [0] * 9),
    "hourly reading budget": (Limit.per_hour(2), [0, 1, 2, 1800, 1801, 3600]),
}


def two_runtimes(url: str, clock: FakeClock, **limits: int) -> list[Runtime]:
    """Two runtimes on one database, as two web processes are: their own engines, the same settings and secret."""
    settings = webhook_settings(url, limits=limits)
    return [
        build_runtime(settings, clock=clock, transports={"sms": RecordingTransport("sms", "+13105550100")})
        for _ in range(2)
    ]


@pytest.fixture
def runtimes(db_url: str, clock: FakeClock) -> Iterator[list[Runtime]]:
    pair = two_runtimes(db_url, clock, inbound_sms_per_minute=3, intake_per_minute=2)
    yield pair
    for rt in pair:
        rt.db.dispose()


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_database_takes_what_the_pure_rule_takes(runtimes: list[Runtime], name: str) -> None:
    """Every take on the row answers as core.limits.take does, and leaves the bucket it leaves."""
    limit, times = SEQUENCES[name]
    shared = SharedLimits(runtimes[0])
    bucket: Bucket | None = None
    for t in times:
        bucket, expected = take(limit, bucket, T0 + t)
        assert shared.take("inbound_sms", limit, PHONE, T0 + t) == expected
        assert shared.bucket("inbound_sms", PHONE) == bucket


def test_two_app_instances_share_one_senders_bucket(runtimes: list[Runtime]) -> None:
    """With 3 signed SMS a minute allowed, two texts through one app and one through another use the number's
    allowance up: its fourth, through either, is stored as a flood (never dropped), and the flood is audited once."""
    one, two = runtimes
    submit_triage(one, TriageIn.model_validate(triage_body()), source="api", actor="test")
    with (
        TestClient(create_app(runtime=one, background=False)) as a,
        TestClient(create_app(runtime=two, background=False)) as b,
    ):
        for i, c in enumerate([a, a, b, b, a]):
            assert post_sms(c, one.settings, sms_fields(PHONE, "my hand is weaker", f"SMshared{i}")).status_code == 200
    with one.db.session() as s:
        stored = list(s.exec(select(m.Inbound).order_by(col(m.Inbound.id))))
        audited = s.exec(select(m.AuditLog.action).where(m.AuditLog.actor == "limits")).all()
    assert [i.meta.get("flood") for i in stored] == [None, None, None, "read", "read"]
    assert audited == ["limits.inbound_sms_flood_started"]


def test_two_app_instances_share_one_addresss_intake_bucket(runtimes: list[Runtime]) -> None:
    """With 2 intake posts a minute, one post through each app uses the address's allowance up: the third, through
    either, gets 429 with Retry-After."""
    one, two = runtimes
    with (
        TestClient(create_app(runtime=one, background=False), client=("198.51.100.9", 1)) as a,
        TestClient(create_app(runtime=two, background=False), client=("198.51.100.9", 2)) as b,
    ):
        answers = [c.post("/intake", data={"name": ""}) for c in (a, b, a)]
    assert [r.status_code == 429 for r in answers] == [False, False, True]
    assert answers[2].headers["retry-after"] == "30"


def test_keys_are_keyed_hashes_never_the_number(runtimes: list[Runtime]) -> None:
    """The row's key is the limit's name and an HMAC of the number: the number is nowhere in the table, and the
    same number under another secret gives another key."""
    rt = runtimes[0]
    SharedLimits(rt).take("inbound_sms", Limit.per_minute(3), PHONE, T0)
    with rt.db.session() as s:
        (row,) = s.exec(select(m.LimitBucket)).all()
    assert row.key == key(rt, "inbound_sms", PHONE) and row.key.startswith("inbound_sms:")
    assert "5550142" not in row.key and len(row.key) == len("inbound_sms:") + 40


def test_rows_of_buckets_full_for_long_are_pruned(runtimes: list[Runtime]) -> None:
    """A bucket full for over an hour is forgotten (no row is a full bucket); one whose flood has not been seen to
    end is kept a day for its "ended" audit; a bucket still refilling is kept."""
    rt = runtimes[0]
    shared, limit = SharedLimits(rt), Limit.per_minute(1)
    shared.take("intake", limit, "quiet", T0)
    shared.take("intake", limit, "flooded", T0)
    shared.take("intake", limit, "flooded", T0)  # refused: a flood not yet ended
    shared.take("intake", limit, "recent", T0 + FORGET_FULL)
    assert shared.prune(T0 + FORGET_FULL + 61) == 1
    assert shared.bucket("intake", "quiet") is None and shared.bucket("intake", "flooded") == Bucket(T0 + 60, 1)
    assert shared.prune(T0 + FORGET_FLOOD + 61) == 2
    assert shared.bucket("intake", "flooded") is None


def test_old_rows_are_pruned_on_the_way(runtimes: list[Runtime]) -> None:
    """Takes prune now and then without any job: an idle sender's row is gone after a later take from another."""
    rt = runtimes[0]
    shared, limit = SharedLimits(rt), Limit.per_minute(1)
    shared.take("intake", limit, "idle", T0)
    shared.take("intake", limit, "busy", T0 + FORGET_FULL + 61)
    assert shared.bucket("intake", "idle") is None and shared.bucket("intake", "busy") is not None


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_threads_taking_at_once_are_granted_exactly_the_capacity(db_url: str, clock: FakeClock) -> None:
    """24 threads on two runtimes (their own engines, as two processes) take from one bucket of 5 at the same
    instant: exactly 5 are allowed and exactly one refusal starts the flood, however the row's lock orders them."""
    pair = two_runtimes(db_url, clock)
    limit, n = Limit.per_minute(5), 24
    shareds = [SharedLimits(rt) for rt in pair]
    barrier, got, lock = threading.Barrier(n), [], threading.Lock()

    def taker(i: int) -> None:
        barrier.wait()
        decision = shareds[i % 2].take("inbound_sms", limit, PHONE, T0)
        with lock:
            got.append(decision)

    threads = [threading.Thread(target=taker, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for rt in pair:
            rt.db.dispose()
    assert Counter(got) == {Decision(True): 5, Decision(False, flood_started=True): 1, Decision(False): n - 6}
    assert SharedLimits(pair[0]).bucket("inbound_sms", PHONE) == Bucket(T0 + 5 * limit.interval, n - 5)


def test_a_flood_in_one_process_ends_in_another(runtimes: list[Runtime]) -> None:
    """The refusals counted by one process are reported by whichever process next allows the sender."""
    one, two = runtimes
    limit = Limit.per_minute(1)
    assert SharedLimits(one).take("inbound_sms", limit, PHONE, T0).allowed
    assert SharedLimits(one).take("inbound_sms", limit, PHONE, T0 + 1) == Decision(False, flood_started=True)
    assert SharedLimits(two).take("inbound_sms", limit, PHONE, T0 + 2) == Decision(False)
    assert SharedLimits(two).take("inbound_sms", limit, PHONE, T0 + 60) == Decision(True, flood_ended=2)
