"""Three `followup worker` processes on one PostgreSQL database share one sender limited to 10 messages a second.

The invariant, from followup/core/pacing.py: the dispatchers pace at 90% of the limit (9/s, burst 1), and the slots
the sender's database row hands out, over all workers, are at least 1/9 s apart, so at most 9 sends are slotted in
any second. The test records every grant the three processes took (a trigger on the row, in this test's own
database) and checks that, whatever the machine's speed. At the provider, a send arrives some time after its slot:
the fake sees at most 10 in a calendar second as long as that delay varies by less than one slot (1/9 s), which
it checks too; bench/pacing.py measures the sliding-window maximum on a loaded machine (bench/README.md).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from itertools import pairwise

import pytest
from factories import seed_due_messages
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from test_workers_pg import FROM, Workers, assert_each_sent_once, pg_url, provider, sent_count, wait_until, workers

from followup.fakeprovider import FakeProvider

pytestmark = pytest.mark.postgres
__all__ = ["pg_url", "provider", "workers"]  # fixtures shared with tests/test_workers_pg.py

LIMIT = 10
SLOT = 1 / (LIMIT * 0.9)  # followup.services.dispatch.PACING_MARGIN

RECORD_GRANTS = """
CREATE TABLE pace_grant (id serial PRIMARY KEY, tat double precision, granted integer);
CREATE FUNCTION pace_grant() RETURNS trigger AS $$
BEGIN INSERT INTO pace_grant (tat, granted) VALUES (NEW.tat, NEW.granted); RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE TRIGGER pace_grant AFTER UPDATE ON senderpace FOR EACH ROW EXECUTE FUNCTION pace_grant();
"""


def granted_slots(url: str) -> list[float]:
    """Every slot the sender's row granted, from the recorded grants: `granted` slots an interval apart ending
    one interval before the row's new `tat`."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as c:
            rows = c.execute(text("SELECT tat, granted FROM pace_grant ORDER BY id")).all()
    finally:
        engine.dispose()
    return sorted(tat - (granted - i) * SLOT for tat, granted in rows for i in range(granted))


def test_three_workers_never_send_over_one_senders_rate(pg_url: str, provider: FakeProvider, workers: Workers) -> None:
    """Three workers drain 120 due messages from one number limited to 10/s: never more than 10 reach the provider
    in any second, and each message goes exactly once."""
    n = 120
    engine = create_engine(pg_url, poolclass=NullPool)
    with engine.begin() as c:
        c.execute(text(RECORD_GRANTS))
    engine.dispose()
    workers.env["FOLLOWUP_DISPATCH__PER_SENDER_PER_SECOND"] = str(LIMIT)
    for _ in range(3):
        workers.start()
    for i in range(3):
        workers.owner(i)  # all three are dispatching before there is anything to send
    seed_due_messages(pg_url, n)
    wait_until(lambda: sent_count(pg_url) == n, f"{n} messages sent", workers)
    assert_each_sent_once(pg_url, provider, n)

    slots = granted_slots(pg_url)
    assert len(slots) >= n  # every send had a slot (a slot whose send could not start in time is wasted, not reused)
    closest = min(b - a for a, b in pairwise(slots))
    assert closest >= SLOT - 1e-6, f"two slots {closest:.4f} s apart"
    most_slotted = max(sum(1 for t in slots[i:] if t < s + 1.0 - 1e-6) for i, s in enumerate(slots))
    assert most_slotted <= LIMIT - 1

    per_second = Counter(datetime.fromisoformat(m["received_at"]).replace(microsecond=0) for m in provider.messages())
    assert set(provider.stats()["max_per_second_by_sender"]) == {FROM}
    assert max(per_second.values()) <= LIMIT, sorted(per_second.items())
    assert len(per_second) >= n // LIMIT  # it took at least n / 10 seconds: the limit was what held it back
