"""Three `followup worker` processes on one PostgreSQL database share one sender limited to 10 messages a second.

The invariant, from followup/core/pacing.py: the dispatchers pace at 90% of the limit (9/s, burst 1), and the slots
the sender's database row hands out, over all workers, are at least 1/9 s apart; so at most 9 sends start in any
second, and the provider sees at most 10 in any one-second window as long as the time from a send's start to its
arrival varies by less than one slot (1/9 s). The fake provider counts arrivals in every sliding window (t - 1 s, t]
and by calendar second; neither may pass 10. It is a count, not a timing claim: however slowly the machine runs,
slower only means fewer.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest
from factories import seed_due_messages
from test_workers_pg import FROM, Workers, assert_each_sent_once, pg_url, provider, sent_count, wait_until, workers

from followup.fakeprovider import FakeProvider

pytestmark = pytest.mark.postgres
__all__ = ["pg_url", "provider", "workers"]  # fixtures shared with tests/test_workers_pg.py

LIMIT = 10


def test_three_workers_never_send_over_one_senders_rate(pg_url: str, provider: FakeProvider, workers: Workers) -> None:
    """Three workers drain 120 due messages from one number limited to 10/s: never more than 10 reach the provider
    in any second, and each message goes exactly once."""
    n = 120
    workers.env["FOLLOWUP_DISPATCH__PER_SENDER_PER_SECOND"] = str(LIMIT)
    for _ in range(3):
        workers.start()
    for i in range(3):
        workers.owner(i)  # all three are dispatching before there is anything to send
    seed_due_messages(pg_url, n)
    wait_until(lambda: sent_count(pg_url) == n, f"{n} messages sent", workers)
    assert_each_sent_once(pg_url, provider, n)

    windows = provider.stats()["max_per_second_by_sender"]
    per_second = Counter(datetime.fromisoformat(m["received_at"]).replace(microsecond=0) for m in provider.messages())
    assert set(windows) == {FROM}
    assert windows[FROM] <= LIMIT, f"{windows[FROM]} sends in one second"
    assert max(per_second.values()) <= LIMIT, sorted(per_second.items())
    assert len(per_second) >= n // LIMIT  # it took at least n / 10 seconds: the limit was what held it back
