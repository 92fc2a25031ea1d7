"""The cost of one /metrics scrape's database figures (followup/services/ops.py: messages by state and channel,
the due backlog and its age, replies waiting, open escalations and their clocks, webhook outbox, heartbeat) as
the message table grows: every figure must stay an indexed count.

    .venv/bin/python bench/metrics_scrape.py [--db sqlite|postgres] [--messages 200000] [--runs 20]

Prints one JSON line, last: per size, the median and worst time of `figures()` in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from _common import database, emit, factories

from followup.clock import FakeClock
from followup.core.vocab import MessageState
from followup.runtime import build_runtime
from followup.services.ops import figures
from followup.settings import Settings

STATES = [MessageState.SENT, MessageState.DELIVERED, MessageState.SCHEDULED, MessageState.FAILED, MessageState.EXPIRED]


def seed(url: str, start: int, n: int) -> None:
    """`n` patients with one message each, spread over five states; a fifth due and unsent."""
    now = datetime.now(UTC)
    rows = factories.message_rows(
        n, now, key="m", due_at=now - timedelta(hours=1), expires_at=lambda _: now + timedelta(days=1), start=start
    )
    for i, row in enumerate(rows):
        row["status"] = STATES[i % len(STATES)]
        row["channel"] = "sms" if i % 3 else "email"
    factories.insert_rows(url, factories.patient_rows(n, now, start=start), rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    out: dict[str, object] = {"db": args.db}
    with database(args.db) as url:
        rt = build_runtime(
            Settings().with_overrides(database={"url": url}, security={"secret_key": "bench-" + "k" * 40}),
            clock=FakeClock(datetime.now(UTC)),
            transports={},
        )
        done = 0
        for size in (1_000, args.messages // 10, args.messages):
            seed(url, done, size - done)
            done = size
            # What autovacuum does in production: statistics, and PostgreSQL's visibility map (index-only scans).
            with rt.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("VACUUM ANALYZE" if args.db == "postgres" else "ANALYZE")
            figures(rt)  # warm
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                f = figures(rt)
                times.append((time.perf_counter() - t) * 1000)
            out[str(size)] = {
                "median_ms": round(statistics.median(times), 2),
                "max_ms": round(max(times), 2),
                "backlog": f.backlog,
            }
        rt.db.dispose()
    emit(out)


if __name__ == "__main__":
    main()
