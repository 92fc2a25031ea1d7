"""Failure back-off kept in the database: one row per key that failed lately (see followup/core/throttle.py).

Keys are keyed hashes (HMAC with the service's secret) of what they count, so the table holds no address, email
or device id. Kept in the database rather than in memory so that every web process shares the counts, a restart
does not reset them, and `followup staff unlock` (another process) can clear an account's. Each failure is
counted with a compare-and-set, so parallel failures are all counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from followup.core.throttle import Backoff, Failures
from followup.models import Throttle
from followup.runtime import Runtime

MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
# What each kind of key allows. An owner's typos stay within `free`; an attacker soon waits the cap between tries.
POLICIES = {
    # One client address, any accounts: generous, as a whole clinic may sign in from behind one address.
    "address": Backoff(free=20, base=SECOND, cap=5 * MINUTE, forget=10 * MINUTE),
    # One account (by the email typed, known or not) from a browser it has not signed in from before.
    "account": Backoff(free=10, base=SECOND, cap=15 * MINUTE, forget=30 * MINUTE),
    # One account from a browser that signed in to it before (its device cookie): the owner's own count.
    "device": Backoff(free=10, base=SECOND, cap=15 * MINUTE, forget=30 * MINUTE),
    # Second-factor codes for one account (a code is 6 digits: few tries are enough for its owner).
    "code": Backoff(free=5, base=2 * SECOND, cap=15 * MINUTE, forget=30 * MINUTE),
    # Inbound Parse credentials from one client address (SendGrid retries a 503 for 72 hours).
    "inbound_auth": Backoff(free=10, base=SECOND, cap=5 * MINUTE, forget=10 * MINUTE),
}
PURGE_AFTER = max(p.horizon for p in POLICIES.values())
RETRIES = 8


@dataclass(frozen=True)
class Key:
    kind: str
    value: str  # "<kind>:<keyed hash>", the row's primary key

    @property
    def policy(self) -> Backoff:
        return POLICIES[self.kind]


def key(rt: Runtime, kind: str, raw: str) -> Key:
    """The key for `raw` (an address, a lower-cased email, a device id, a staff id) of one kind."""
    if kind not in POLICIES:
        raise ValueError(f"kind: one of {', '.join(POLICIES)}")
    return Key(kind, f"{kind}:{rt.links.keyed_hash(f'throttle:{kind}:{raw}', 40)}")


def retry_after(rt: Runtime, keys: Iterable[Key]) -> timedelta:
    """The longest wait any of the keys imposes now (zero: the attempt may be checked)."""
    wanted = {k.value: k for k in keys}
    now = rt.clock.now()
    with rt.db.session() as s:
        rows = s.exec(select(Throttle).where(col(Throttle.key).in_(list(wanted)))).all()
    waits = [wanted[r.key].policy.retry_after(Failures(r.count, r.last_at), now) for r in rows]
    return max(waits, default=timedelta(0))


def failed(rt: Runtime, keys: Iterable[Key]) -> timedelta:
    """Count one failure against each key; returns the longest wait that now applies. Rows idle for longer than
    any count lasts are deleted on the way."""
    now = rt.clock.now()
    longest = timedelta(0)
    for k in keys:
        count = _count(rt, k, now)
        longest = max(longest, k.policy.wait(count))
    with rt.db.session() as s:
        s.exec(delete(Throttle).where(col(Throttle.last_at) < now - PURGE_AFTER))
        s.commit()
    return longest


def _count(rt: Runtime, k: Key, now: datetime) -> float:
    """Compare-and-set one failure onto the row; another process's failure in between makes it read again."""
    for _ in range(RETRIES):
        with rt.db.session() as s:
            row = s.get(Throttle, k.value)
            seen = Failures(row.count, row.last_at) if row is not None else None
            after = k.policy.failed(seen, now)
            if row is None:
                s.add(Throttle(key=k.value, count=after.count, last_at=now))
                try:
                    s.commit()
                except IntegrityError:
                    continue  # another failure created it first: count on top of it
                return after.count
            done = s.exec(
                update(Throttle)
                .where(
                    col(Throttle.key) == k.value,
                    col(Throttle.count) == row.count,
                    col(Throttle.last_at) == row.last_at,
                )
                .values(count=after.count, last_at=now)
            )
            s.commit()
            if done.rowcount == 1:
                return after.count
    return k.policy.most  # contended all along: count it as the worst case rather than not at all


def clear(rt: Runtime, keys: Iterable[Key]) -> None:
    """Forget the failures of these keys (a successful sign-in, an admin's unlock)."""
    values = [k.value for k in keys]
    with rt.db.session() as s:
        s.exec(delete(Throttle).where(col(Throttle.key).in_(values)))
        s.commit()
