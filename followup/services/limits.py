"""Flood limits shared by every web process on the database: one bucket row per sender and limit.

A request takes its token with one statement, `INSERT ... ON CONFLICT (key) DO UPDATE ... RETURNING`, which does
followup/core/limits.py's `take` in SQL on the row as it is when the statement runs: on PostgreSQL two processes'
statements on one row queue on its lock and the second computes from the first's result; on SQLite the single
writer does the same. So N web processes together never allow a sender more than its limit, and the single-process
default (SQLite) takes the same path with no extra server. Why the database and not Redis: README, "Scale".

Keys are keyed hashes (HMAC with the service's secret) of the number or address, so the table holds neither. On
PostgreSQL the statement is its own transaction and commits without waiting for the write-ahead log to reach the
disk (`synchronous_commit = off` for that transaction only): a crash can lose the last few hundred milliseconds of
takes, which gives a flooding sender a few tokens back and nothing else, and the webhook waits on no disk flush.
Rows of buckets that have been full for an hour are deleted on the way, at most once every `PRUNE_EVERY` seconds
per process.
"""

from __future__ import annotations

from sqlalchemy import Float, String, bindparam, case, delete, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import ReturningInsert
from sqlmodel import col

from followup.core.limits import Bucket, Decision, Limit
from followup.models import LimitBucket
from followup.runtime import Runtime

PRUNE_EVERY = 600.0
FORGET_FULL = 3600.0  # a bucket full for this long is forgotten (no row is a full bucket)
FORGET_FLOOD = 86_400.0  # ... unless a flood on it has not been seen to end: kept a day for its "ended" audit


def key(rt: Runtime, name: str, raw: str) -> str:
    """The row key for `raw` (a normalised number, a client address) under the limit called `name`."""
    return f"{name}:{rt.links.keyed_hash(f'limits:{name}:{raw}', 40)}"


class SharedLimits:
    """Takes tokens from the shared buckets, and prunes old rows now and then."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._postgres = rt.db.is_postgres
        self._statement = statement(rt.db.engine.dialect.name)  # built once: its compiled form is cached
        self._next_prune = 0.0

    def take(self, name: str, limit: Limit, raw: str, now: float) -> Decision:
        """Take one token from the bucket of `raw` under `name` at `now` (seconds), committed before it returns."""
        params = {"key": key(self.rt, name, raw), "now": now, "interval": limit.interval, "reach": limit.reach}
        # Core, not the ORM, and one round trip on PostgreSQL: this runs on every signed inbound SMS (bench/limits.py)
        if self._postgres:
            with self.rt.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                refused, ended = c.execute(self._statement, params).one()
        else:
            with self.rt.db.engine.begin() as c:
                refused, ended = c.execute(self._statement, params).one()
        if now >= self._next_prune:  # two threads may both prune: harmless
            self._next_prune = now + PRUNE_EVERY
            self.prune(now)
        if refused:
            return Decision(False, flood_started=refused == 1)
        return Decision(True, flood_ended=ended)

    def prune(self, now: float) -> int:
        """Delete the rows of buckets full for long (see FORGET_FULL); returns how many."""
        quiet = col(LimitBucket.tat) < now - FORGET_FULL
        with self.rt.db.session() as s:
            gone = s.exec(
                delete(LimitBucket).where(
                    quiet, or_(col(LimitBucket.refused) == 0, col(LimitBucket.tat) < now - FORGET_FLOOD)
                )
            )
            s.commit()
        return int(gone.rowcount)

    def bucket(self, name: str, raw: str) -> Bucket | None:
        """The stored bucket of `raw` under `name` (None: no row, a full bucket); for tests and operators."""
        with self.rt.db.session() as s:
            row = s.get(LimitBucket, key(self.rt, name, raw))
        return None if row is None else Bucket(row.tat, row.refused)


def statement(dialect: str) -> ReturningInsert[int, int]:
    """core.limits.take as one statement, on the parameters `key`, `now`, `interval` and `reach` (Limit.reach): a
    new row is a full bucket's first take; on an existing row the SET expressions all read the row as it was (both
    databases evaluate SET against the old row). On PostgreSQL it runs in autocommit, as its own transaction, and
    turns `synchronous_commit` off for that transaction itself (`set_config(..., true)` in a subquery it reads), so
    the take is one round trip that does not wait for the disk."""
    now, interval = bindparam("now", type_=Float), bindparam("interval", type_=Float)
    tat, refused = col(LimitBucket.tat), col(LimitBucket.refused)
    after = case((tat > now, tat), else_=now) + interval
    allowed = after - now <= bindparam("reach", type_=Float)
    columns = ["key", "tat", "refused", "ended"]
    new = (bindparam("key", type_=String), now + interval, literal(0), literal(0))
    source = select(*new)
    if dialect == "postgresql":
        config = select(func.set_config("synchronous_commit", "off", True).label("value")).subquery("config")
        source = source.where(config.c.value == "off")
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(LimitBucket)
        .from_select(columns, source)
        .on_conflict_do_update(
            index_elements=[col(LimitBucket.key)],
            set_={
                "tat": case((allowed, after), else_=tat),
                "refused": case((allowed, literal(0)), else_=refused + 1),
                "ended": case((allowed, refused), else_=literal(0)),
            },
        )
        .returning(col(LimitBucket.refused), col(LimitBucket.ended))
    )
