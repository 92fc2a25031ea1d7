"""Several `followup worker` processes on one PostgreSQL database, one sender limited to a rate: the most sends the
fake provider saw in any one-second window, and in any calendar second.

    .venv/bin/python bench/pacing.py                      # 3 workers, 10 msg/s, 300 messages
    .venv/bin/python bench/pacing.py --workers 3 --rate 10 --count 600

The workers pace at 90% of the rate, from one bucket row shared through the database (followup/services/pacing.py),
so the expected figures are: max_in_any_second <= rate, achieved_per_s ~ 0.9 x rate. Prints one JSON line, last.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from _common import database, emit, seed_due_messages
from test_workers_pg import FROM, Workers, sent_count

from followup.fakeprovider import FakeProvider


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--count", type=int, default=300)
    args = p.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="followup-pacing-"))
    provider = FakeProvider(status_delay_s=3600.0).start()
    try:
        with database("postgres") as url:
            workers = Workers(url, provider, logs)
            workers.env["FOLLOWUP_DISPATCH__PER_SENDER_PER_SECOND"] = str(args.rate)
            workers.env["FOLLOWUP_DISPATCH__LEASE_SECONDS"] = "30"
            try:
                for _ in range(args.workers):
                    workers.start()
                for i in range(args.workers):
                    workers.owner(i)
                seed_due_messages(url, args.count)
                while sent_count(url) < args.count:
                    time.sleep(0.5)
            finally:
                workers.stop()
        stats = provider.stats()
        arrivals = sorted(datetime.fromisoformat(m["received_at"]) for m in provider.messages())
    finally:
        provider.stop()
    per_second = Counter(a.replace(microsecond=0) for a in arrivals)
    times = [a.timestamp() for a in arrivals]
    densest = max(range(len(times)), key=lambda i: sum(1 for t in times[i:] if t < times[i] + 1.0))
    window = [t for t in times[densest:] if t < times[densest] + 1.0]
    span = (arrivals[-1] - arrivals[0]).total_seconds()
    emit(
        {
            "bench": "pacing",
            "workers": args.workers,
            "rate_limit_per_s": args.rate,
            "count": args.count,
            "sent_at_provider": len(arrivals),
            "max_in_any_second": stats["max_per_second_by_sender"].get(FROM, 0),
            "max_in_a_calendar_second": max(per_second.values()),
            # the arrivals of the densest one-second window, ms after its first: where bunching came from
            "densest_window_ms": [round((t - window[0]) * 1000) for t in window],
            "densest_window_at_s": round(window[0] - times[0], 2),
            "achieved_per_s": round((len(arrivals) - 1) / span, 2) if span > 0 else None,
        }
    )


if __name__ == "__main__":
    main()
