"""Failure back-off and bounded heavy work, as pure values.

`Backoff` is the rule for repeated failures (wrong passwords, wrong codes, wrong webhook credentials): a few are
free, then each further failure doubles the wait before the next attempt, up to a cap. Failures are forgotten
slowly (one per `forget`), so an attacker who keeps trying keeps waiting, while an owner who mistyped twice last
week waits for nothing. Nothing here locks for longer than `cap`: the lockout that anyone could keep closed with
one wrong try every 15 minutes (issue 11) is replaced by waits that an owner outlasts.

`Slots` bounds how many heavy jobs (an argon2 hash takes 64 MiB) run at once. Taking a slot never waits: a caller
that finds none free is told at once, so a flood costs neither memory nor a queue.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Failures:
    """How many failures a key has to its name (forgetting already applied) and when the last one was."""

    count: float
    last: datetime


@dataclass(frozen=True)
class Backoff:
    free: int  # failures that cost no wait
    base: timedelta  # the wait after the first failure past `free`
    cap: timedelta  # no wait is ever longer
    forget: timedelta  # one failure is forgotten per this much time without a new one

    @property
    def most(self) -> float:
        """The count past which another failure changes nothing (the wait is at its cap), so counts stay small."""
        doublings = 0
        while self.base * 2**doublings < self.cap:
            doublings += 1
        return float(self.free + doublings + 1)

    @property
    def horizon(self) -> timedelta:
        """After this long without a failure every count is back to zero."""
        return self.forget * self.most

    def wait(self, count: float) -> timedelta:
        """The wait that `count` failures impose after the last one. A failure counts whole until half of it is
        forgotten (so the seconds forgotten during one short wait do not undo a doubling)."""
        over = math.floor(count + 0.5) - self.free
        if over < 0:
            return timedelta(0)
        return min(self.cap, self.base * (1 << min(over, 30)))

    def forgotten(self, seen: Failures | None, now: datetime) -> float:
        """The count as of `now`: one failure less per `forget` since the last."""
        if seen is None:
            return 0.0
        elapsed = max(timedelta(0), now - seen.last)
        return max(0.0, seen.count - elapsed / self.forget)

    def retry_after(self, seen: Failures | None, now: datetime) -> timedelta:
        """How long before the next attempt may be checked (zero: go ahead)."""
        if seen is None:
            return timedelta(0)
        return max(timedelta(0), seen.last + self.wait(seen.count) - now)

    def failed(self, seen: Failures | None, now: datetime) -> Failures:
        """The record after one more failure at `now`."""
        return Failures(min(self.most, self.forgotten(seen, now) + 1), now)


class Busy(Exception):
    """Every slot for heavy work is taken; try again in a moment."""


class Slots:
    """At most `size` holders at once; `take` never waits. Thread-safe (password checks run in worker threads)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size: at least 1")
        self.size = size
        self._free = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        # What happened so far, for tests and the bench: slots granted, refusals, and the most held at once.
        self.taken = self.refused = self.in_use = self.peak = 0

    @property
    def full(self) -> bool:
        """Every slot is held right now (a hint for refusing early; `take` is what decides)."""
        return self.in_use >= self.size

    def take(self) -> _Slot:
        """A context manager holding one slot; raises Busy at once when none is free."""
        if not self._free.acquire(blocking=False):
            with self._lock:
                self.refused += 1
            raise Busy("every slot is in use")
        with self._lock:
            self.taken += 1
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)
        return _Slot(self)

    def _release(self) -> None:
        with self._lock:
            self.in_use -= 1
        self._free.release()


class _Slot:
    def __init__(self, slots: Slots) -> None:
        self._slots = slots

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self._slots._release()
