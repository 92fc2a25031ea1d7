"""Signed inbound SMS webhooks through the real app (signature check, storage, TwiML answer; a worker reads each
reply for red flags and acts, after the answer) against a bare endpoint on the same stack (uvicorn + FastAPI, form
parsing only), each in its own process.

    .venv/bin/python bench/inbound.py [--rates 50,100,200] [--seconds 10] [--shape web+worker|single]

`--shape web+worker` (default): the web process as `serve --no-dispatch` runs it and one worker process
(bench/_ingest_worker.py) acting on the replies; `single`: the single-process default (web, reply worker thread and
dispatcher in one process).

Per server: open loops at each rate (latency measured from each request's planned start, so a slow server cannot
hide its queueing), then a closed loop at `--concurrency` for the most requests/s. Prints one JSON line, last:
p50/p99 at each rate, max req/s, and the app/bare ratios at the last (target) rate. `--db postgres` for PostgreSQL.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import httpx
from _common import ROOT, database, emit
from _inbound_server import settings_for

from followup.clock import SystemClock
from followup.core.triage import TriageIn
from followup.fakeprovider import DEV_TWILIO_AUTH_TOKEN, sign_twilio
from followup.runtime import build_runtime
from followup.services.enrollment import submit_triage
from followup.simulator.cohort import BENIGN_REPLIES, RED_FLAG_REPLIES, Cohort, phone_of

PATIENTS = 200
PATH = "/webhooks/twilio/sms"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def enroll(url: str, port: int) -> None:
    """Patients the replies come from (so the app matches each sender and runs the whole path)."""
    from datetime import UTC, datetime, timedelta

    rt = build_runtime(settings_for(url, port), clock=SystemClock())
    cohort = Cohort(1, PATIENTS, datetime.now(UTC), timedelta(hours=1), triage_red_flag_rate=0.0)
    for i in range(PATIENTS):
        submit_triage(rt, TriageIn.model_validate(cohort.triage_body(cohort.patient(i))), source="api", actor="bench")
    rt.db.dispose()


class Load:
    """Builds signed requests: 95% benign replies, 5% red flags, each with a fresh MessageSid."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}{PATH}"
        self.n = itertools.count()
        # One client for all threads (httpx's is thread-safe), warmed up before any timing: a client or connection
        # made during a timed run would show up as a latency spike of the load generator, not of the server.
        self.http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    def warm(self, threads: int) -> None:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda _: self.send(), range(threads * 4)))

    def send(self) -> float:
        i = next(self.n)
        body = RED_FLAG_REPLIES[i % len(RED_FLAG_REPLIES)] if i % 20 == 0 else BENIGN_REPLIES[i % len(BENIGN_REPLIES)]
        form = {
            "MessageSid": f"SMbench{i:027d}",
            "AccountSid": "ACbench",
            "From": phone_of(i % PATIENTS),
            "To": "+15005550006",
            "Body": body,
            "NumMedia": "0",
        }
        headers = {
            "X-Twilio-Signature": sign_twilio(self.url, form, DEV_TWILIO_AUTH_TOKEN),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        started = time.perf_counter()
        r = self.http.post(self.url, content=urlencode(form), headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"webhook answered {r.status_code}: {r.text[:200]}")
        return time.perf_counter() - started


def open_loop(load: Load, rate: float, seconds: float, threads: int) -> tuple[list[float], float]:
    """Requests planned at a fixed rate; latency counted from the planned start. Returns latencies, req/s."""
    count = int(rate * seconds)
    t0 = time.perf_counter() + 0.2

    def one(k: int) -> float:
        planned = t0 + k / rate
        wait = planned - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        load.send()
        return time.perf_counter() - planned

    with ThreadPoolExecutor(threads) as pool:
        latencies = list(pool.map(one, range(count)))
    return latencies, count / (time.perf_counter() - t0)


def closed_loop(load: Load, count: int, concurrency: int) -> float:
    with ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        list(pool.map(lambda _: load.send(), range(count)))
        return count / (time.perf_counter() - started)


def pct(values: list[float], q: int) -> float:
    return round(1000 * statistics.quantiles(values, n=100)[q - 1], 1) if len(values) > 1 else 0.0


def measure(mode: str, url: str, args: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    if mode == "app":
        enroll(url, port)
    server_mode = "single" if mode == "app" and args.shape == "single" else mode
    cmd = [sys.executable, str(ROOT / "bench" / "_inbound_server.py"), server_mode, url, str(port)]
    server = subprocess.Popen(cmd, cwd=ROOT)  # noqa: S603 - our own script
    worker = None
    if mode == "app" and args.shape == "web+worker":
        wcmd = [sys.executable, str(ROOT / "bench" / "_ingest_worker.py"), url, str(port)]
        worker = subprocess.Popen(wcmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603 - our own script
        assert worker.stdout is not None
        worker.stdout.readline()  # "worker ready"
    try:
        load = Load(port)
        for _ in range(300):
            try:
                load.send()  # the first one loads the red-flag detector
                break
            except httpx.TransportError:
                time.sleep(0.1)
        load.warm(max(args.threads, args.concurrency))
        at_rate = {}
        for rate in args.rates:
            latencies, achieved = open_loop(load, rate, args.seconds, args.threads)
            at_rate[str(int(rate))] = {
                "p50_ms": pct(latencies, 50),
                "p99_ms": pct(latencies, 99),
                "achieved_req_s": round(achieved, 1),
            }
            print(mode, rate, at_rate[str(int(rate))], flush=True)
        best = closed_loop(load, args.max_count, args.concurrency)
    finally:
        for proc in (server, worker):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    return {"open_loop": at_rate, "max_req_s": round(best, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="50,100,200", help="open-loop rates, requests/s (the last is the target)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each open-loop run")
    p.add_argument("--threads", type=int, default=32, help="client threads for the open loop")
    p.add_argument("--concurrency", type=int, default=16, help="client threads for the closed loop")
    p.add_argument("--max-count", type=int, default=2000)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--shape", choices=("web+worker", "single"), default="web+worker")
    args = p.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    with database(args.db) as url:
        app = measure("app", url, args)
    bare = measure("bare", "", args)
    target = str(int(args.rates[-1]))
    app_at, bare_at = app["open_loop"][target], bare["open_loop"][target]  # type: ignore[index]
    emit(
        {
            "bench": "inbound",
            "db": args.db,
            "shape": args.shape,
            "seconds_per_rate": args.seconds,
            "app": app,
            "bare": bare,
            "target_rate": args.rates[-1],
            "p50_ms": app_at["p50_ms"],
            "p99_ms": app_at["p99_ms"],
            "max_req_s_ratio": round(app["max_req_s"] / bare["max_req_s"], 3),  # type: ignore[operator]
            "p99_ratio": round(app_at["p99_ms"] / bare_at["p99_ms"], 2) if bare_at["p99_ms"] else None,
        }
    )


if __name__ == "__main__":
    main()
