"""Per-sender pacing shared by every dispatcher on the database: one bucket row per sender.

A dispatcher reserves its batch's send slots with one `UPDATE ... RETURNING` on the sender's row, in the same
transaction that marks the batch `sending` (so a batch that is not committed reserved nothing). The statement does
followup/core/pacing.py's `grant` in SQL, on the row as it is when the statement runs: on PostgreSQL two workers'
updates of one row queue on its lock and the second computes from the first's result; on SQLite the single writer
does the same. So N worker processes together never start more than the sender's rate, and one process (the
default, on SQLite) takes the same path with no extra server.

Slots are wall-clock times (seconds since the epoch), the one clock every worker process on a machine shares;
workers on several machines need their clocks in step (NTP), as a clock running ahead lets its worker's grants
start early by as much.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Float, bindparam, case, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import ReturningUpdate
from sqlmodel import Session, SQLModel

from followup.core.pacing import Grant, Pace, count, reach
from followup.models import SenderPace


class SharedPacer:
    def __init__(
        self,
        pace: Pace,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pace = pace
        self._wall, self._sleep = wall, sleep
        self._known: set[str] = set()  # senders whose row exists (rows are never deleted)
        self._started: dict[str, float] = {}  # per sender: the earliest next start in this process
        self._lock = threading.Lock()
        self._grant = self._grant_statement()  # built once: reserve runs in every dispatcher pass

    def reserve(self, s: Session, sender: str, want: int, horizon: float) -> list[float]:
        """Up to `want` slots for `sender`, none later than `horizon` seconds from now, earliest first. Runs in the
        caller's transaction, which must commit for the slots to count (and holds the row's lock until it does)."""
        if want <= 0:
            return []
        now = self._wall()
        if sender not in self._known:
            _ensure_row(s, sender)
            self._known.add(sender)
        params = {"b_sender": sender, "b_now": now, "b_reach": reach(self.pace, now, horizon), "b_want": float(want)}
        row = s.connection().execute(self._grant, params).first()
        if row is None:  # the row went missing (a restored database): make it and ask again
            _ensure_row(s, sender)
            row = s.connection().execute(self._grant, params).first()
            assert row is not None
        tat, granted = float(row[0]), int(row[1])
        return Grant(granted, tat - granted * self.pace.interval, tat).slots(self.pace, now)

    def room(self, s: Session, sender: str, horizon: float, most: int) -> int:
        """How many sends (up to `most`) `sender` could be granted now within `horizon`, read without a lock: a
        dispatcher claims no more messages than that, rather than claiming, rendering and putting back what
        another worker's grants left no slot for (three workers on one saturated number did that every pass)."""
        tat = s.connection().execute(_TAT, {"b_sender": sender}).scalar()
        if tat is None:
            return most
        now = self._wall()
        return count(self.pace, max(float(tat), now), reach(self.pace, now, horizon), most)

    def wait(self, sender: str, at: float) -> None:
        """Sleep until slot `at`, and until this process's previous send from `sender` is an interval behind (the
        same rule, over the moments sends actually start). A thread held up past its slot (a first send building
        its client, a busy interpreter) then does not start together with the next slot's: sends that started
        late reached the provider bunched."""
        with self._lock:
            now = self._wall()
            local = self._started.get(sender, now)
            start = max(at, now, local - self.pace.tolerance)
            self._started[sender] = max(start, local) + self.pace.interval
        if start > now:
            self._sleep(start - now)

    def _grant_statement(self) -> ReturningUpdate[float, int]:
        """core.pacing.grant as one statement: the same operations in the same order, so the same result. Its
        parameters: b_sender, b_now, b_reach (core.pacing.reach) and b_want (a float)."""
        p = self.pace
        tat = _PACE.c.tat
        now_ = bindparam("b_now", type_=Float)
        want = bindparam("b_want", type_=Float)
        start = case((tat > now_, tat), else_=now_)
        fits = func.floor((bindparam("b_reach", type_=Float) - start) / literal(p.interval, Float)) + 1
        n = case((fits < 0, literal(0, Float)), (fits > want, want), else_=fits)
        return (
            update(_PACE)
            .where(_PACE.c.sender == bindparam("b_sender", type_=_PACE.c.sender.type))
            .values(granted=n, tat=start + n * literal(p.interval, Float))
            .returning(_PACE.c.tat, _PACE.c.granted)
        )


_PACE = SQLModel.metadata.tables["senderpace"]
_TAT = select(_PACE.c.tat).where(_PACE.c.sender == bindparam("b_sender", type_=_PACE.c.sender.type))


def _ensure_row(s: Session, sender: str) -> None:
    """The sender's bucket, full (its schedule time in the distant past), unless it exists already."""
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    s.exec(insert(SenderPace).values(sender=sender, tat=0.0, granted=0).on_conflict_do_nothing())
