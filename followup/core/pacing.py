"""Per-sender pacing as a pure rule: how many sends to grant now, and when each may start.

The rule is a token bucket written as a schedule (the "generic cell rate algorithm"): the bucket's whole state is
one number, `tat`, the time at which the next send would start if sends went out one `interval` apart. A bucket
that has been quiet has `tat` in the past (it is full). Granting `n` sends moves `tat` on by `n` intervals; send
`i` of the grant may start at `max(now, start + i * interval - tolerance)`, where `start = max(tat, now)` and
`tolerance` lets `burst` sends go back to back after a quiet spell.

Sends are granted ahead of time (a worker reserves its batch's slots in one statement) but never further ahead
than `horizon`: a slot later than that would outlive the worker's lease, so it is not granted at all and the
message stays in the queue for the next pass.

What it guarantees, whoever asks and in whatever order: the slots handed out for one sender, over all grants, are
`interval` apart after the first `burst`. So any window of `w` seconds holds at most `burst - 1 + ceil(w / interval)`
starts (with `burst = 1` and a rate of 9/s: at most 9 in any second).

`followup/services/pacing.py` runs the same arithmetic as one SQL `UPDATE ... RETURNING` on a row per sender, so
that every worker process shares the bucket; its tests check the database agrees with `grant` case by case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Pace:
    """Sends a second from one sender, and how many may go back to back after a quiet spell."""

    rate: float
    burst: int = 1

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError("rate: must be more than 0 sends a second")
        if self.burst < 1:
            raise ValueError("burst: at least 1")

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    @property
    def tolerance(self) -> float:
        """How far ahead of the schedule a send may start: room for `burst - 1` extra sends."""
        return (self.burst - 1) * self.interval


@dataclass(frozen=True)
class Grant:
    """Sends granted now: `count` of them, slotted from `start`; `tat` is the bucket's state afterwards."""

    count: int
    start: float
    tat: float

    def slots(self, pace: Pace, now: float) -> list[float]:
        """When each granted send may start, earliest first (seconds, on the clock `now` was read from)."""
        return [max(now, self.start + i * pace.interval - pace.tolerance) for i in range(self.count)]


def reach(pace: Pace, now: float, horizon: float) -> float:
    """The latest schedule time a grant may take: a slot starts at most `horizon` after `now`."""
    return now + horizon + pace.tolerance


def count(pace: Pace, start: float, reach_at: float, want: int) -> int:
    """How many of `want` sends fit between the schedule's `start` and `reach_at` (0 to `want`)."""
    fits = math.floor((reach_at - start) / pace.interval) + 1
    return max(0, min(want, fits))


def grant(pace: Pace, tat: float | None, now: float, want: int, horizon: float) -> Grant:
    """Grant up to `want` sends for a bucket in state `tat` (None: never used) at `now`, none of them starting
    more than `horizon` seconds from now. A clock read earlier than `tat` never gives anything back."""
    if want < 0:
        raise ValueError("want: 0 or more")
    if horizon < 0:
        raise ValueError("horizon: 0 or more seconds")
    start = now if tat is None else max(tat, now)
    n = count(pace, start, reach(pace, now, horizon), want)
    return Grant(n, start, start + n * pace.interval)
