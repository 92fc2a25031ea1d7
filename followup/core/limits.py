"""Flood limits as a pure rule: a token bucket per sender, and when a flood starts and ends.

A bucket holds at most `capacity` tokens and gets one back every `interval` seconds; each request takes one, and a
request that finds none is refused. The bucket is written as a schedule (the "generic cell rate algorithm", as in
followup/core/pacing.py), so its whole level is one number, `tat`: the time at which the bucket would be full again.
A bucket whose `tat` is in the past is full; one request moves `tat` on by an `interval`, and is allowed as long as
that leaves `tat` no more than `capacity` intervals ahead of now. A clock read earlier than a previous one never
gives a token back (the level is measured from `max(tat, now)`).

`refused` counts the requests refused since the sender last got a token: the first refusal starts a flood (audited
once), and the next request allowed ends it with that count.

followup/services/limits.py runs the same arithmetic as one SQL statement on a row per sender, so every web process
shares the bucket; its tests check the database agrees with `take` case by case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A token that is this many seconds from coming back counts as back: sums of float intervals on epoch timestamps
# drift by a few ulps (2.4e-7 s at today's epoch), and a bucket of 7 a minute must still grant 7 at once. Far below
# the shortest interval a limit may have (MIN_INTERVAL), so it can never grant a whole token more.
EARLY = 1e-3
MIN_INTERVAL = 4 * EARLY


@dataclass(frozen=True)
class Limit:
    """At most `capacity` requests at once, then one every `interval` seconds."""

    capacity: int
    interval: float

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("capacity: at least 1")
        if not self.interval >= MIN_INTERVAL:
            raise ValueError(f"interval: at least {MIN_INTERVAL} s")

    @classmethod
    def per_minute(cls, n: int) -> Limit:
        """`n` at once, refilled at `n` a minute."""
        return cls(n, 60.0 / n)

    @classmethod
    def per_hour(cls, n: int) -> Limit:
        """`n` at once, refilled at `n` an hour."""
        return cls(n, 3600.0 / n)

    @property
    def reach(self) -> float:
        """How far ahead of now `tat` may be after a request is allowed: the whole bucket's worth of intervals."""
        return self.capacity * self.interval + EARLY

    @property
    def retry_after(self) -> int:
        """Whole seconds until an empty bucket holds a token again (at least 1)."""
        return max(1, math.ceil(self.interval))


@dataclass(frozen=True)
class Bucket:
    """One sender's bucket: full again at `tat` (seconds), `refused` requests refused since its last token."""

    tat: float
    refused: int = 0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    flood_started: bool = False  # the first refusal since the sender was last allowed
    flood_ended: int = 0  # allowed again after this many refusals


def take(limit: Limit, bucket: Bucket | None, now: float) -> tuple[Bucket, Decision]:
    """Take one token from `bucket` (None: never used, a full one) at `now`: the bucket afterwards, and the answer."""
    if bucket is None:
        return Bucket(now + limit.interval), Decision(True)
    after = max(bucket.tat, now) + limit.interval
    if after - now <= limit.reach:
        return Bucket(after), Decision(True, flood_ended=bucket.refused)
    refused = bucket.refused + 1
    return Bucket(bucket.tat, refused), Decision(False, flood_started=refused == 1)
