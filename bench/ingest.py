"""Acknowledge fast, act in the worker (issue 13): one web process that stores and answers, one `followup worker`
process that acts, on PostgreSQL (or SQLite), with the load generator and a fake provider on the same machine.

    .venv/bin/python bench/ingest.py [--db postgres] [--seconds 15] [--sms-rate 200] [--status-rate 400]

1. Signed inbound SMS at `--sms-rate` (open loop; latency from each request's planned start): p50/p99 of the
   webhook's answer. 5% are red flags, each from a patient of its own; for each, the time from the start of its
   webhook request to the on-call alert SMS accepted by the fake provider (sent by the worker's dispatcher through
   the real Twilio SDK): the end-to-end figure. Also how long the worker took to act on every reply of the run.
2. Signed Twilio status callbacks at `--status-rate` for messages already sent: p50/p99 of the answer, and how long
   the worker took to apply them all.
Prints one JSON line, last.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
from _common import ROOT, database, emit
from _inbound_server import settings_for
from inbound import PATH, free_port, open_loop, pct
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from followup.clock import SystemClock
from followup.core.triage import TriageIn
from followup.fakeprovider import DEV_TWILIO_AUTH_TOKEN, FakeProvider, sign_twilio
from followup.runtime import build_runtime
from followup.services.enrollment import submit_triage
from followup.simulator.cohort import BENIGN_REPLIES, Cohort, phone_of

ONCALL = "+13105550199"
RED_FLAG = "My right hand is getting weaker and I keep dropping things."  # urgent: the on-call list is alerted
BENIGN_PATIENTS = 200


def scalar(url: str, sql: str, **params: object) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as c:
            return int(c.execute(text(sql), params).scalar() or 0)
    finally:
        engine.dispose()


def enroll(url: str, port: int, n: int) -> None:
    rt = build_runtime(settings_for(url, port), clock=SystemClock())
    cohort = Cohort(1, n, datetime.now(UTC), timedelta(hours=1), triage_red_flag_rate=0.0)
    for i in range(n):
        submit_triage(rt, TriageIn.model_validate(cohort.triage_body(cohort.patient(i))), source="api", actor="bench")
    rt.db.dispose()


class Sms:
    """Signed inbound SMS: every 20th a red flag from a patient not used before, the rest benign."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}{PATH}"
        self.n = itertools.count()
        self.red = itertools.count(BENIGN_PATIENTS)
        self.red_posted: dict[str, float] = {}  # phone -> wall time the request was started
        self.http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    def send(self, red: bool | None = None) -> float:
        i = next(self.n)
        red = (i % 20 == 0) if red is None else red
        phone = phone_of(next(self.red)) if red else phone_of(i % BENIGN_PATIENTS)
        form = {
            "MessageSid": f"SMingest{i:026d}",
            "AccountSid": "ACbench",
            "From": phone,
            "To": "+15005550006",
            "Body": RED_FLAG if red else BENIGN_REPLIES[i % len(BENIGN_REPLIES)],
            "NumMedia": "0",
        }
        headers = {
            "X-Twilio-Signature": sign_twilio(self.url, form, DEV_TWILIO_AUTH_TOKEN),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if red:
            self.red_posted[phone] = time.time()
        started = time.perf_counter()
        r = self.http.post(self.url, content=urlencode(form), headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"webhook answered {r.status_code}: {r.text[:200]}")
        return time.perf_counter() - started


class Status:
    """Signed Twilio status callbacks (sent, then delivered) for the messages already sent."""

    def __init__(self, port: int, messages: list[tuple[int, str]]) -> None:
        self.base = f"http://127.0.0.1:{port}/webhooks/twilio/status"
        self.calls = itertools.cycle([(mid, sid, st) for st in ("sent", "delivered") for mid, sid in messages])
        self.http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    def send(self) -> float:
        mid, sid, state = next(self.calls)
        url = f"{self.base}?mid={mid}"
        form = {"MessageSid": sid, "MessageStatus": state, "AccountSid": "ACbench", "To": "+15005550100"}
        headers = {
            "X-Twilio-Signature": sign_twilio(url, form, DEV_TWILIO_AUTH_TOKEN),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        started = time.perf_counter()
        r = self.http.post(url, content=urlencode(form), headers=headers)
        if r.status_code != 204:
            raise RuntimeError(f"status webhook answered {r.status_code}: {r.text[:200]}")
        return time.perf_counter() - started


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc): a figure less sensitive than wall time
    to the other work on a shared machine."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(check: object, limit_s: float) -> float | None:
    """Seconds until `check()` is true, or None after `limit_s`."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        if check():  # type: ignore[operator]
            return round(time.perf_counter() - started, 2)
        time.sleep(0.1)
    return None


def end_to_end(url: str, fake: FakeProvider, posted: dict[str, float]) -> dict[str, object]:
    """For each red-flag reply: from its webhook request's start to the on-call alert accepted by the provider."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT m.id, p.phone FROM message m JOIN escalation e ON e.id = m.escalation_id "
                'JOIN patient p ON p.id = e.patient_id WHERE m."to" = :oncall'
            ),
            {"oncall": ONCALL},
        ).all()
    engine.dispose()
    phone_of_message = {str(mid): phone for mid, phone in rows}
    seconds = []
    for m in fake.messages():
        phone = phone_of_message.get(str(m.get("message_id")))
        if m["to"] == ONCALL and phone in posted:
            accepted = datetime.fromisoformat(m["received_at"]).replace(tzinfo=UTC).timestamp()
            seconds.append(accepted - posted[phone])
    seconds.sort()
    out: dict[str, object] = {"red_flags": len(posted), "alerts": len(seconds)}
    if len(seconds) > 1:
        out |= {"p50_s": round(pct(seconds, 50) / 1000, 3), "p99_s": round(pct(seconds, 99) / 1000, 3)}
        out |= {"max_s": round(seconds[-1], 3)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", choices=("sqlite", "postgres"), default="postgres")
    p.add_argument("--seconds", type=float, default=15.0, help="length of each open-loop run")
    p.add_argument("--sms-rate", type=float, default=200.0)
    p.add_argument("--status-rate", type=float, default=400.0)
    p.add_argument("--threads", type=int, default=48, help="client threads for the open loops")
    args = p.parse_args()
    red_patients = int(args.sms_rate * args.seconds / 20) + 20
    out: dict[str, object] = {"bench": "ingest", "db": args.db, "seconds_per_run": args.seconds}
    fake = FakeProvider(status_delay_s=3600.0).start()  # no status callbacks of its own: phase 2 posts them
    with database(args.db) as url:
        port = free_port()
        enroll(url, port, BENIGN_PATIENTS + red_patients)
        web_cmd = [sys.executable, str(ROOT / "bench/_inbound_server.py"), "app", url, str(port)]
        web = subprocess.Popen(web_cmd, cwd=ROOT)  # noqa: S603 - our own script
        worker = subprocess.Popen(  # noqa: S603 - our own script
            [sys.executable, str(ROOT / "bench/_ingest_worker.py"), url, str(port), fake.url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout is not None
            worker.stdout.readline()  # "worker ready": the detector is loaded
            sms = Sms(port)
            for _ in range(600):
                try:
                    sms.send(red=False)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            sms.red_posted.clear()
            wait_for(lambda: scalar(url, "SELECT count(*) FROM inbound WHERE status = 'received'") == 0, 120)
            web_cpu, worker_cpu = cpu_s(web.pid), cpu_s(worker.pid)
            latencies, achieved = open_loop(sms, args.sms_rate, args.seconds, args.threads)
            web_cpu = cpu_s(web.pid) - web_cpu
            sent = time.perf_counter()
            drained = wait_for(lambda: scalar(url, "SELECT count(*) FROM inbound WHERE status = 'received'") == 0, 600)
            worker_cpu = cpu_s(worker.pid) - worker_cpu
            out["sms"] = {
                "rate": args.sms_rate,
                "achieved_req_s": round(achieved, 1),
                "p50_ms": pct(latencies, 50),
                "p99_ms": pct(latencies, 99),
                "replies": len(latencies),
                "worker_done_after_last_s": drained,
                "worker_replies_per_s": round(len(latencies) / (args.seconds + drained), 1) if drained else None,
                "web_cpu_ms_per_reply": round(1000 * web_cpu / len(latencies), 2),
                "worker_cpu_ms_per_reply": round(1000 * worker_cpu / len(latencies), 2) if drained else None,
            }
            wait_for(lambda: len([m for m in fake.messages() if m["to"] == ONCALL]) >= len(sms.red_posted), 120)
            out["end_to_end"] = end_to_end(url, fake, sms.red_posted)
            print("sms", out["sms"], out["end_to_end"], f"{time.perf_counter() - sent:.1f}s", flush=True)

            messages = [
                (int(mid), str(sid))
                for mid, sid in create_engine(url, poolclass=NullPool)
                .connect()
                .execute(text("SELECT id, provider_id FROM message WHERE provider_id IS NOT NULL"))
                .all()
            ]
            status = Status(port, messages)
            web_cpu, worker_cpu = cpu_s(web.pid), cpu_s(worker.pid)
            latencies, achieved = open_loop(status, args.status_rate, args.seconds, args.threads)
            web_cpu = cpu_s(web.pid) - web_cpu
            unapplied = "SELECT count(*) FROM deliveryevent WHERE outcome IS NULL"
            applied = wait_for(lambda: scalar(url, unapplied) == 0, 600)
            worker_cpu = cpu_s(worker.pid) - worker_cpu
            out["status"] = {
                "rate": args.status_rate,
                "achieved_req_s": round(achieved, 1),
                "p50_ms": pct(latencies, 50),
                "p99_ms": pct(latencies, 99),
                "callbacks": len(latencies),
                "messages": len(messages),
                "worker_done_after_last_s": applied,
                "events_stored": scalar(url, "SELECT count(*) FROM deliveryevent"),
                "web_cpu_ms_per_callback": round(1000 * web_cpu / len(latencies), 2),
                "worker_cpu_ms_per_callback": round(1000 * worker_cpu / len(latencies), 2),
            }
            print("status", out["status"], flush=True)
        finally:
            for proc in (web, worker):
                proc.terminate()
            for proc in (web, worker):
                proc.wait(timeout=30)
            fake.stop()
    emit(out)


if __name__ == "__main__":
    main()
