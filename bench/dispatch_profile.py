"""Where the CPU goes when our dispatcher and the bare SDK send the same messages at high concurrency.

    .venv/bin/python bench/dispatch_profile.py --concurrency 64 --count 4000

Every thread (the dispatcher's pass and each send thread; each of the bare SDK's threads) runs under cProfile with
its own CPU clock (`time.thread_time`), so waiting on the provider costs nothing and the figures are CPU seconds
per message, which is what runs out first when two cores carry 64 threads. Prints the top functions of each side
by own CPU time, the CPU per message of each part of ours, and one JSON line, last.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import FROM_NUMBER, database, emit, fake_provider, phone, seed_due_messages
from dispatch import settings_for

from followup.clock import SystemClock
from followup.fakeprovider import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN
from followup.runtime import build_runtime
from followup.services.dispatch import Dispatcher
from followup.transports.twilio_sms import TwilioSms

PASS_PROFILES: Profiles | None = None  # the dispatcher's pass alone (claim, prepare, record), for its callees

BODY = (
    "Thanks, Pat. We got your reply. The Achilles Neurology Clinic team reads replies during office hours. "
    "For emergencies call 911."
)


class Profiles:
    """One CPU-time profiler per thread, enabled only inside the wrapped calls."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def profiled(*args: Any, **kwargs: Any) -> Any:
            prof = getattr(self._local, "prof", None)
            if prof is None:
                prof = self._local.prof = cProfile.Profile(time.thread_time)
                with self._lock:
                    self._all.append(prof)
            prof.enable()
            try:
                return fn(*args, **kwargs)
            finally:
                prof.disable()

        return profiled

    def stats(self) -> pstats.Stats:
        st = pstats.Stats(self._all[0], stream=io.StringIO())
        for p in self._all[1:]:
            st.add(p)
        return st


def cpu_total(st: pstats.Stats) -> float:
    return float(st.total_tt)  # type: ignore[attr-defined]


def top(st: pstats.Stats, n: int, per: int) -> list[tuple[str, float]]:
    rows = []
    for (file, line, name), (_cc, _nc, tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append((f"{file.rsplit('/site-packages/', 1)[-1]}:{line}({name})", tt / per * 1e6))
    return sorted(rows, key=lambda r: -r[1])[:n]


def cumulative(st: pstats.Stats, name_part: str, per: int) -> float:
    """CPU microseconds per message under functions whose name contains `name_part` (largest match)."""
    best = 0.0
    for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        if name_part in f"{file}:{name}":
            best = max(best, ct)
    return best / per * 1e6


def run_ours(url: str, api_base: str, count: int, concurrency: int, batch: int) -> tuple[pstats.Stats, float]:
    settings = settings_for(url, api_base, concurrency, batch)
    sms = TwilioSms(
        DEV_TWILIO_ACCOUNT_SID,
        DEV_TWILIO_AUTH_TOKEN,
        FROM_NUMBER,
        api_base=api_base,
        status_callback_base=settings.server.public_url,
    )
    rt = build_runtime(settings, clock=SystemClock(), transports={"sms": sms, "email": sms})
    d = Dispatcher(rt)
    profiles = Profiles()
    global PASS_PROFILES
    PASS_PROFILES = Profiles()
    try:
        warm = concurrency * 2
        seed_due_messages(url, warm)
        d.run_once()
        seed_due_messages(url, count, start=warm)
        d._send = profiles.wrap(d._send)  # type: ignore[method-assign]
        run = PASS_PROFILES.wrap(d.run_once)  # one profiler per thread: the pass's own, on the main thread
        started = time.perf_counter()
        sent = 0
        while sent < count:
            sent += run().sent
        both = profiles.stats()
        both.add(PASS_PROFILES.stats())
        return both, count / (time.perf_counter() - started)
    finally:
        d.close()
        rt.db.dispose()


def run_bare(api_base: str, count: int, concurrency: int) -> tuple[pstats.Stats, float]:
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    local = threading.local()
    profiles = Profiles()

    def send(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = Client(
                DEV_TWILIO_ACCOUNT_SID,
                DEV_TWILIO_AUTH_TOKEN,
                http_client=TwilioHttpClient(timeout=10, pool_connections=True),
            )
            local.client.api.base_url = api_base
        local.client.messages.create(
            to=phone(i), from_=FROM_NUMBER, body=BODY, status_callback=f"http://127.0.0.1:8000/s?mid={i}"
        )

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, range(concurrency * 2)))
        profiled = profiles.wrap(send)
        started = time.perf_counter()
        list(pool.map(profiled, range(concurrency * 2, concurrency * 2 + count)))
        return profiles.stats(), count / (time.perf_counter() - started)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--count", type=int, default=4000)
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    with fake_provider(args.latency_ms) as api_base:
        bare, bare_rate = run_bare(api_base, args.count, args.concurrency)
        with database(args.db) as url:
            ours, ours_rate = run_ours(url, api_base, args.count, args.concurrency, args.batch_size)
    n = args.count
    parts = {
        "send (thread: transport + metrics)": cumulative(ours, "dispatch.py:_send", n),
        "  of which Twilio SDK create": cumulative(ours, "twilio_sms.py:send", n),
        "pass (claim + prepare + record)": cumulative(ours, "dispatch.py:run_once", n),
        "  claim": cumulative(ours, "dispatch.py:claim", n),
        "  prepare (decide, render, mark sending, pace)": cumulative(ours, "dispatch.py:prepare", n),
        "    render": cumulative(ours, "templates.py:render", n),
        "    pace (the bucket UPDATE + the flush of the batch it triggers)": cumulative(ours, "pacing.py:reserve", n),
        "  record": cumulative(ours, "dispatch.py:record", n),
    }
    for side, st in (("bare SDK", bare), ("ours", ours)):
        print(f"\n== {side}: {cpu_total(st) / n * 1e6:.0f} CPU-us per message; top by own time (us/msg)")
        for name, us in top(st, args.top, n):
            print(f"{us:9.1f}  {name}")
    assert PASS_PROFILES is not None
    passes = PASS_PROFILES.stats()
    print("\n== ours, the pass alone (claim, prepare, record): top by cumulative CPU (us/msg)")
    rows = [
        (f"{f.rsplit('/site-packages/', 1)[-1]}:{line}({name})", ct / n * 1e6)
        for (f, line, name), (_cc, _nc, _tt, ct, _c) in passes.stats.items()  # type: ignore[attr-defined]
    ]
    for name, us in sorted(rows, key=lambda r: -r[1])[: args.top * 2]:
        print(f"{us:9.1f}  {name}")
    print("\n== ours by part (CPU-us per message)")
    for name, us in parts.items():
        print(f"{us:9.1f}  {name}")
    emit(
        {
            "bench": "dispatch_profile",
            "db": args.db,
            "count": n,
            "concurrency": args.concurrency,
            "latency_ms": args.latency_ms,
            "bare_cpu_us_per_msg": round(cpu_total(bare) / n * 1e6, 1),
            "ours_cpu_us_per_msg": round(cpu_total(ours) / n * 1e6, 1),
            "parts_cpu_us_per_msg": {k.strip(): round(v, 1) for k, v in parts.items()},
            "bare_per_s_profiled": round(bare_rate, 1),
            "ours_per_s_profiled": round(ours_rate, 1),
        }
    )


if __name__ == "__main__":
    main()
