"""Our dispatcher (claim, render, send through the real Twilio SDK, record) against the bare SDK sending the same
messages with the same concurrency and no database, both to the fake provider with 50 ms of latency.

    .venv/bin/python bench/dispatch.py --db sqlite
    .venv/bin/python bench/dispatch.py --db postgres      # FOLLOWUP_BENCH_POSTGRES_URL or the test server

Prints one JSON line, last: ours_per_s, bare_per_s, ratio (ours / bare), the CPU time per message of each side
(this process; the fake provider runs in its own) and cpu_ratio (bare / ours), and the settings used.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from _common import FROM_NUMBER, ROOT, database, emit, fake_provider, phone, seed_due_messages

from followup.clock import SystemClock
from followup.fakeprovider import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN
from followup.runtime import build_runtime
from followup.services.dispatch import Dispatcher
from followup.settings import Settings
from followup.transports.twilio_sms import TwilioSms


def settings_for(url: str, api_base: str, concurrency: int, batch: int) -> Settings:
    return Settings().with_overrides(
        database={"url": url},
        clinic={
            "program": ROOT / "clinic/program.toml",
            "red_flags": ROOT / "clinic/red_flags.toml",
            "intake_rules": ROOT / "clinic/intake.toml",
            "keywords": ROOT / "clinic/keywords.toml",
            "templates": ROOT / "templates",
            "oncall_sms": ["+13105550199"],  # required once a provider is configured
        },
        twilio={"account_sid": DEV_TWILIO_ACCOUNT_SID, "from_number": FROM_NUMBER, "api_base": api_base},
        dispatch={"concurrency": concurrency, "batch_size": batch, "per_sender_per_second": 1e9},
        security={"secret_key": "bench-" + "k" * 40},
    )


def run_ours(url: str, api_base: str, count: int, concurrency: int, batch: int, warmup: int) -> tuple[float, float]:
    settings = settings_for(url, api_base, concurrency, batch)
    sms = TwilioSms(
        DEV_TWILIO_ACCOUNT_SID,
        DEV_TWILIO_AUTH_TOKEN,
        FROM_NUMBER,
        api_base=api_base,
        status_callback_base=settings.server.public_url,
    )
    rt = build_runtime(settings, clock=SystemClock(), transports={"sms": sms, "email": sms})
    dispatcher = Dispatcher(rt)
    try:
        seed_due_messages(url, warmup)
        dispatcher.run_once()  # connections, templates and the pool warm up, as in a running worker
        seed_due_messages(url, count, start=warmup)
        started, cpu = time.perf_counter(), time.process_time()
        sent = 0
        while sent < count:
            sent += dispatcher.run_once().sent
        return count / (time.perf_counter() - started), (time.process_time() - cpu) / count * 1e6
    finally:
        dispatcher.close()
        rt.db.dispose()


def run_bare(api_base: str, count: int, concurrency: int, warmup: int, body: str) -> tuple[float, float]:
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    local = threading.local()

    def send(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = Client(
                DEV_TWILIO_ACCOUNT_SID,
                DEV_TWILIO_AUTH_TOKEN,
                http_client=TwilioHttpClient(timeout=10, pool_connections=True),
            )
            local.client.api.base_url = api_base
        local.client.messages.create(
            to=phone(i),
            from_=FROM_NUMBER,
            body=body,
            status_callback=f"http://127.0.0.1:8000/webhooks/twilio/status?mid={i}",
        )

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, range(warmup)))
        started, cpu = time.perf_counter(), time.process_time()
        list(pool.map(send, range(warmup, warmup + count)))
        return count / (time.perf_counter() - started), (time.process_time() - cpu) / count * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--count", type=int, default=4000)
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=Settings().dispatch.concurrency)
    p.add_argument("--batch-size", type=int, default=Settings().dispatch.batch_size)
    p.add_argument("--rounds", type=int, default=2, help="alternating runs of each; the median is reported")
    args = p.parse_args()
    body = (
        "Thanks, Pat. We got your reply. The Achilles Neurology Clinic team reads replies during office hours. "
        "For emergencies call 911."
    )
    warmup = args.concurrency * 2
    ours, bare, ours_cpu, bare_cpu = [], [], [], []
    with fake_provider(args.latency_ms) as api_base:
        for _ in range(args.rounds):
            rate, cpu = run_bare(api_base, args.count, args.concurrency, warmup, body)
            bare.append(rate)
            bare_cpu.append(cpu)
            with database(args.db) as url:
                rate, cpu = run_ours(url, api_base, args.count, args.concurrency, args.batch_size, warmup)
            ours.append(rate)
            ours_cpu.append(cpu)
            print(
                f"bare {bare[-1]:.0f}/s ({bare_cpu[-1]:.0f} CPU-us/msg)  "
                f"ours {ours[-1]:.0f}/s ({ours_cpu[-1]:.0f} CPU-us/msg)",
                flush=True,
            )
    o, b = statistics.median(ours), statistics.median(bare)
    oc, bc = statistics.median(ours_cpu), statistics.median(bare_cpu)
    emit(
        {
            "bench": "dispatch",
            "db": args.db,
            "count": args.count,
            "latency_ms": args.latency_ms,
            "concurrency": args.concurrency,
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "ours_per_s": round(o, 1),
            "bare_per_s": round(b, 1),
            "ratio": round(o / b, 3),
            # CPU time of this process per message (the fake provider runs in its own): less sensitive than the
            # rates to what else the machine is doing, and what runs out first at high concurrency.
            "ours_cpu_us_per_msg": round(oc, 1),
            "bare_cpu_us_per_msg": round(bc, 1),
            "cpu_ratio": round(bc / oc, 3),
        }
    )


if __name__ == "__main__":
    main()
