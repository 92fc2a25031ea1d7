"""The flood-limit rule (followup/core/limits.py): a token bucket kept as one schedule time, with the start and end
of each flood; no database, no clock."""

from __future__ import annotations

import pytest

from followup.core.limits import EARLY, MIN_INTERVAL, Bucket, Decision, Limit, take

T0 = 1_764_000_000.0  # an epoch time of today's size: sums of intervals on it round, as they do in production


def run(limit: Limit, times: list[float], bucket: Bucket | None = None) -> tuple[Bucket | None, list[Decision]]:
    decisions = []
    for now in times:
        bucket, decision = take(limit, bucket, now)
        decisions.append(decision)
    return bucket, decisions


@pytest.mark.parametrize(
    ("per_minute", "times", "allowed"),
    [
        (3, [0, 0, 0, 0], [1, 1, 1, 0]),  # the burst, then refused
        (3, [0, 0, 0, 19.9, 20], [1, 1, 1, 0, 1]),  # a token is back 20 s after (3 a minute), not before
        (3, [0, 0, 0, 0, 0, 60], [1, 1, 1, 0, 0, 1]),
        (3, [0, 600, 600, 600, 600], [1, 1, 1, 1, 0]),  # idle time refills to the burst, not beyond
        (1, [0, 59, 60, 61], [1, 0, 1, 0]),
        (7, [0] * 8, [1] * 7 + [0]),  # 60/7 s intervals: float sums still grant the whole burst, and no more
        (10_000, [0] * 10_001, [1] * 10_000 + [0]),  # the largest setting, intervals of 6 ms
    ],
)
def test_a_bucket_allows_its_burst_then_its_rate(per_minute: int, times: list[float], allowed: list[int]) -> None:
    """n a minute: n at once, then one every 60/n s; waiting never saves up more than n."""
    _, decisions = run(Limit.per_minute(per_minute), [T0 + t for t in times])
    assert [int(d.allowed) for d in decisions] == allowed


def test_a_flood_starts_at_the_first_refusal_and_ends_with_its_count() -> None:
    """Only the first refusal starts a flood; the next allowed request ends it with the number refused, once."""
    limit = Limit.per_minute(2)
    _, decisions = run(limit, [T0, T0, T0, T0, T0 + 1, T0 + 30, T0 + 31])
    assert decisions == [
        Decision(True),
        Decision(True),
        Decision(False, flood_started=True),
        Decision(False),
        Decision(False),
        Decision(True, flood_ended=3),
        Decision(False, flood_started=True),
    ]


def test_a_refusal_keeps_the_schedule_and_counts() -> None:
    """A refused request moves nothing but the count: refusals do not push the sender's next token back."""
    limit = Limit.per_minute(1)
    bucket, _ = take(limit, None, T0)
    after, decision = take(limit, bucket, T0 + 10)
    assert after == Bucket(bucket.tat, 1) and not decision.allowed
    assert take(limit, after, bucket.tat)[1] == Decision(True, flood_ended=1)


def test_a_clock_read_behind_the_last_gives_nothing_back() -> None:
    """A request stamped earlier than the previous one (another process's clock) is measured from the schedule, so
    it cannot find tokens the later request already took."""
    limit = Limit.per_minute(2)
    bucket, decisions = run(limit, [T0 + 60, T0 + 60, T0])
    assert [d.allowed for d in decisions] == [True, True, False]
    assert bucket is not None and bucket.tat == T0 + 120


@pytest.mark.parametrize(
    ("limit", "capacity", "interval", "retry_after"),
    [
        (Limit.per_minute(2), 2, 30.0, 30),
        (Limit.per_minute(7), 7, 60 / 7, 9),
        (Limit.per_minute(120), 120, 0.5, 1),  # never 0 seconds
        (Limit.per_hour(30), 30, 120.0, 120),
    ],
)
def test_limits_per_minute_and_per_hour(limit: Limit, capacity: int, interval: float, retry_after: int) -> None:
    """A limit of n per minute (hour) holds n and gets one back every 60/n (3600/n) s; Retry-After rounds up."""
    assert (limit.capacity, limit.interval, limit.retry_after) == (capacity, pytest.approx(interval), retry_after)
    assert limit.reach == pytest.approx(capacity * interval + EARLY)


@pytest.mark.parametrize(("capacity", "interval"), [(0, 1.0), (1, MIN_INTERVAL / 2), (1, 0.0), (1, float("nan"))])
def test_a_limit_refuses_settings_it_cannot_keep(capacity: int, interval: float) -> None:
    """No empty buckets, and no interval so short that the rounding allowance could grant a whole extra token."""
    with pytest.raises(ValueError):
        Limit(capacity, interval)
