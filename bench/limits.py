"""The shared flood limit's own cost: `SharedLimits.take` (one INSERT ... ON CONFLICT DO UPDATE ... RETURNING and
its commit) timed in-process, from one thread and from several at once, over many senders or one.

    .venv/bin/python bench/limits.py [--db sqlite|postgres] [--takes 2000] [--threads 1,8] [--senders 200]

Prints per run the wall time of a take (p50, p99) and the process's CPU per take, then one JSON line, last.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from _common import database, emit
from _inbound_server import settings_for

from followup.clock import SystemClock
from followup.core.limits import Limit
from followup.runtime import build_runtime
from followup.services.limits import SharedLimits


def run(shared: SharedLimits, takes: int, threads: int, senders: int) -> dict[str, float]:
    limit = Limit.per_minute(10_000)  # as the bench's app: never refused, every take writes
    per_thread = takes // threads
    walls: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        mine = []
        barrier.wait()
        for i in range(per_thread):
            start = time.perf_counter()
            shared.take("inbound_sms", limit, f"+1310555{(t * per_thread + i) % senders:04d}", time.time())
            mine.append(time.perf_counter() - start)
        with lock:
            walls.extend(mine)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    cpu, wall = time.process_time(), time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    q = statistics.quantiles(walls, n=100)
    return {
        "threads": threads,
        "senders": senders,
        "takes": len(walls),
        "p50_ms": round(q[49] * 1000, 3),
        "p99_ms": round(q[98] * 1000, 3),
        "takes_per_s": round(len(walls) / wall, 1),
        "cpu_us_per_take": round(cpu / len(walls) * 1e6, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--takes", type=int, default=2000)
    p.add_argument("--threads", default="1,8")
    p.add_argument("--senders", type=int, default=200)
    args = p.parse_args()
    with database(args.db) as url:
        rt = build_runtime(settings_for(url, 1), clock=SystemClock())
        shared = SharedLimits(rt)
        run(shared, 200, 1, args.senders)  # warm: connections, statement cache
        results = []
        for threads in (int(t) for t in args.threads.split(",")):
            for senders in (args.senders, 1):
                result = run(shared, args.takes, threads, senders)
                print(result, flush=True)
                results.append(result)
        rt.db.dispose()
    emit({"bench": "limits", "db": args.db, "runs": results})


if __name__ == "__main__":
    main()
