"""Every query at scale: a throwaway PostgreSQL database holding N patients with a realistic history, then the
p50 / p95 of each operation the service runs on it, the plans of the slowest statement of each, and the size.

    .venv/bin/python bench/scale_db.py --patients 10000 [--keep] [--samples 30] [--plans bench/plans-10k.md]

The history is written with COPY (no service calls): patients enrolled evenly over `--years`, each with the
program's 19 steps (sent, delivered, failed, expired or still scheduled depending on their age), two delivery
events per message sent, replies to check-ins, escalations in every state with their clinic alerts, re-alert rounds
and booked visits, and audit rows, in the simulator's proportions (bench/README.md). Texts older than the retention
period are already purged, as the daily job would have left them. The measuring runs in a fresh process (its peak
RSS is the service's memory on that database) with the real services on a fixed clock and recording transports.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from followup.db import upgrade  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = datetime(2027, 6, 1, 16, 0, tzinfo=UTC)  # a weekday afternoon: inside most zones' send window
PURGED = "[removed after the retention period]"
ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "Europe/Madrid"]
TIERS = [("emergency", "emergency", 0.05), ("red_flag", "urgent", 0.09), ("red_flag", "routine", 0.86)]
TIP = "Tip: cutting back on caffeine and getting enough sleep often calms twitching. Reply STOP to opt out."
CHECKIN = "How is the twitching this week? Reply 1 better, 2 the same, 3 worse, or tell us in your words."
REPLIES = [("Twitching a bit better this week, thanks", "better"), ("About the same", "same"), ("2", "same")]
RED_REPLY = "my right hand is getting weaker and I drop things"

# Proportions (from `followup simulate --patients 2000 --days 30 --seed 1`): 0.35 escalations per patient per
# program month, 5% / 9% / 86% emergency / urgent / routine; replies to about 60% of check-ins; ~3% of messages
# not delivered; about one STOP in 50 patients.
P_ESCALATION, P_REPLY, P_OPTOUT, P_EMAIL = 0.40, 0.60, 0.02, 0.25


def admin_url() -> Any:
    base = os.environ.get("FOLLOWUP_BENCH_POSTGRES_URL") or os.environ.get("FOLLOWUP_TEST_POSTGRES_URL") or PG_DEFAULT
    return make_url(base).set(drivername="postgresql+psycopg")


def libpq(url: Any) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


# ---- the history ---------------------------------------------------------------------------------------------


class Ids:
    def __init__(self) -> None:
        self.n: dict[str, int] = {}
        self.slots: set[datetime] = set()

    def next(self, table: str) -> int:
        self.n[table] = self.n.get(table, 0) + 1
        return self.n[table]


COLUMNS = {
    "patient": "id name phone email channel timezone language status sms_state email_state reply_token onset_at "
    "enrolled_at created_at updated_at",
    "triage": "id patient_id source answers red_flags disposition created_at",
    "consent": "id patient_id channel action source text at",
    "escalation": "id patient_id level tier status source criteria evidence triage_id inbound_ids acknowledged_at "
    "acknowledged_by booked_at closed_at closed_by note created_at updated_at nonce",
    "message": "id patient_id escalation_id dedupe_key channel to kind step_id template question_id context urgent "
    "status due_at expires_at attempts provider_id reason subject body segments sent_at delivered_at created_at "
    "updated_at",
    "deliveryevent": "id event_key message_id provider status error_code at outcome",  # history: applied
    "inbound": "id provider_key channel patient_id sender body meta status intent level verdict reason received_at "
    "processed_at",
    "appointment": "id escalation_id patient_id starts_at ends_at status booked_by created_at updated_at",
    "escalationalert": "id escalation_id round tier_index tier recipients at",
    "auditlog": "id at actor action subject detail",
}


def patient_history(i: int, rnd: random.Random, ids: Ids, steps: list[Any], years: float) -> dict[str, list[tuple]]:
    """Every row one patient leaves, as tuples in COLUMNS order."""
    out: dict[str, list[tuple]] = {t: [] for t in COLUMNS}
    pid = ids.next("patient")
    enrolled = NOW - timedelta(seconds=rnd.uniform(0, years * 365 * 86400))
    age = NOW - enrolled
    cutoff = NOW - timedelta(days=180)
    email = rnd.random() < P_EMAIL
    channel = "email" if email else "sms"
    opted_out = rnd.random() < P_OPTOUT
    lang = "es" if rnd.random() < 0.2 else "en"
    phone = f"+1555{i:07d}"
    addr = f"patient{i}@mail.example"
    last_step = steps[-1].offset
    status = "completed" if age > last_step + timedelta(days=1) else "active"
    if opted_out:
        status = "unenrolled"
    j = lambda v: json.dumps(v)  # noqa: E731
    answers = {"onset": "weeks_1_4", "location": ["calf"], "weakness": False, "age": 20 + i % 50}
    tid = ids.next("triage")
    out["triage"].append((tid, pid, "api", j(answers), "[]", "enrolled", enrolled))
    out["consent"].append((ids.next("consent"), pid, channel, "opt_in", "api", "I agree to messages", enrolled))
    out["auditlog"].append((ids.next("auditlog"), enrolled, "token:1", "triage.submitted", f"patient:{pid}", "{}"))
    prefix = f"step:{pid}:{enrolled:%Y%m%dT%H%M%S}:"
    checkins: list[tuple[int, datetime]] = []
    for step in steps:
        due = enrolled + step.offset
        mid = ids.next("message")
        old = due < cutoff
        if due > NOW:
            state, sent, delivered = ("cancelled" if opted_out else "scheduled"), None, None
        else:
            r = rnd.random()
            state = "delivered" if r < 0.95 else "failed" if r < 0.97 else "undelivered" if r < 0.98 else "expired"
            if due > NOW - timedelta(hours=6) and state == "delivered":
                state = "sent"
            sent = due + timedelta(seconds=rnd.uniform(1, 60)) if state != "expired" else None
            delivered = sent + timedelta(seconds=5) if state == "delivered" and sent else None
        went = state in ("sent", "delivered", "failed", "undelivered")
        body = (PURGED if old else (CHECKIN if step.kind == "checkin" else TIP)) if went else None
        sid = f"SM{mid:030d}" if went and not email else (f"sg{mid}" if went else None)
        out["message"].append(
            (mid, pid, None, prefix + step.id, channel, None, step.kind, step.id, step.template, step.question, "{}",
             False, state, due, due + timedelta(hours=12), 1 if went else 0, sid,
             "expired: not sent in time" if state == "expired" else None,
             ("Your follow-up" if email and went and not old else None), body, 1 if went and not email else None,
             sent, delivered, enrolled, delivered or sent or enrolled)
        )  # fmt: skip
        if went and sent:
            prov = "sendgrid" if email else "twilio"
            for k, ev in enumerate(("sent", "delivered" if state == "delivered" else state)):
                if ev == "sent" and state == "sent" and k == 1:
                    break
                out["deliveryevent"].append(
                    (
                        ids.next("deliveryevent"),
                        f"{prov}:{sid}:{ev}",
                        mid,
                        prov,
                        ev,
                        None,
                        sent + timedelta(seconds=k),
                        "applied",
                    )
                )
        if step.kind == "checkin" and state in ("delivered", "sent") and sent:
            checkins.append((mid, sent))
    red_reply: tuple[int, datetime] | None = None
    for _mid, sent in checkins:
        if rnd.random() >= P_REPLY or opted_out:
            continue
        at = sent + timedelta(minutes=rnd.uniform(5, 600))
        if at > NOW:
            continue
        iid = ids.next("inbound")
        red = rnd.random() < 0.04
        text_, trend = (RED_REPLY, None) if red else rnd.choice(REPLIES)
        sender = addr if email else phone
        old = at < cutoff
        verdict = {"level": "red_flag" if red else "none", "criteria": ["weakness"] if red else []}
        meta = {"trend": trend} if trend else {}
        out["inbound"].append(
            (iid, f"twilio:SMin{iid:028d}", channel, pid, sender, PURGED if old else text_, j(meta), "processed",
             "reply", "red_flag" if red else "none", j(verdict), None, at, at)
        )  # fmt: skip
        if red:
            red_reply = (iid, at)
    if rnd.random() < P_ESCALATION or red_reply:
        eid = ids.next("escalation")
        r, acc = rnd.random(), 0.0
        level, tier = "red_flag", "routine"
        for lv, tr, p in TIERS:
            acc += p
            if r < acc:
                level, tier = lv, tr
                break
        created = red_reply[1] if red_reply else enrolled + timedelta(days=rnd.uniform(0, 45))
        created = min(created, NOW - timedelta(minutes=10))
        recent = NOW - created < timedelta(days=14)
        roll = rnd.random()
        if recent:
            st = "open" if roll < 0.2 else "acknowledged" if roll < 0.5 else "booked" if roll < 0.75 else "closed"
        else:
            st = "closed" if roll < 0.9 else "booked"
        ack = created + timedelta(minutes=rnd.uniform(5, 240)) if st != "open" else None
        if st in ("open", "acknowledged", "booked") and status == "active":
            status = "escalated"
        crit = ["weakness"] if level == "red_flag" else ["breathing"]
        out["escalation"].append(
            (eid, pid, level, tier, st, "reply" if red_reply else "triage", j(crit), "[]",
             None if red_reply else tid, j([red_reply[0]] if red_reply else []), ack, "staff:1" if ack else None,
             ack if st == "booked" else None, ack if st == "closed" else None, "staff:1" if st == "closed" else None,
             None, created, ack or created, f"{eid:016x}")
        )  # fmt: skip
        msgs = [("escalation", channel, None, f"esc:{eid}:patient", "escalation_red_flag")]
        if tier != "routine":
            msgs += [("alert", "sms", "+13105550199", f"alert:{eid}:{tier}:0:sms", "clinic_alert")]
            msgs += [("alert", "email", "oncall@clinic.example", f"alert:{eid}:{tier}:0:email", "clinic_alert")]
        for kind, ch, to, key, tpl in msgs:
            mid = ids.next("message")
            body = PURGED if created < cutoff else "Please book a visit: we have been told."
            out["message"].append(
                (mid, pid if kind != "alert" else None, eid, key, ch, to, kind, None, tpl, None, "{}", True,
                 "delivered", created, created + timedelta(hours=1), 1, f"SMa{mid:029d}", None, None, body, 1,
                 created, created, created, created)
            )  # fmt: skip
        if tier != "routine" and (st != "open" or rnd.random() < 0.5):
            out["escalationalert"].append((ids.next("escalationalert"), eid, 1, 1, tier, 2, created))
        if st == "booked":
            start = created + timedelta(days=rnd.randint(1, 20), hours=rnd.randint(0, 400))
            start = start.replace(minute=0, second=0, microsecond=0)
            while start in ids.slots:  # one booking per slot (uq_appointment_slot_booked)
                start += timedelta(minutes=30)
            ids.slots.add(start)
            out["appointment"].append(
                (ids.next("appointment"), eid, pid, start, start + timedelta(minutes=30), "booked", f"patient:{pid}",
                 created, created)
            )  # fmt: skip
        for action in ("escalation.acknowledge", "escalation.close")[: 0 if st == "open" else 1 + (st == "closed")]:
            out["auditlog"].append((ids.next("auditlog"), ack, "staff:1", action, f"escalation:{eid}", "{}"))
    out["patient"].append(
        (pid, f"Pat{i} Lastname{i % 997}", None if email else phone, addr if email else None, channel,
         ZONES[i % len(ZONES)], lang, status, "opted_out" if opted_out and not email else "ok",
         "opted_out" if opted_out and email else "ok", f"r{i:010d}{rnd.randrange(1 << 30):x}",
         enrolled - timedelta(days=14), enrolled, enrolled, enrolled)
    )  # fmt: skip
    return out


SILENCE_BACKFILL = (
    # set-based (one pass over each table), as migration e7b2c9d4a1f6 does: a correlated subquery per patient
    # took 185 s at 10,000 patients on the freshly loaded tables
    "UPDATE patient SET last_reply_at = r.at FROM (SELECT patient_id, max(received_at) AS at FROM inbound"
    " WHERE patient_id IS NOT NULL GROUP BY patient_id) AS r WHERE r.patient_id = patient.id",
    "UPDATE patient SET silent_since = c.sent_at FROM (SELECT m.patient_id, m.sent_at, row_number() OVER"
    " (PARTITION BY m.patient_id ORDER BY m.sent_at) AS n FROM message m JOIN patient p ON p.id = m.patient_id"
    " WHERE m.kind = 'checkin' AND m.sent_at IS NOT NULL AND (p.last_reply_at IS NULL OR m.sent_at >= p.last_reply_at))"
    " AS c WHERE c.patient_id = patient.id AND c.n = 2",
)


def build(url: Any, patients: int, years: float, seed: int) -> dict[str, Any]:
    """COPY the history of `patients` patients into the migrated database at `url`."""
    from followup.settings import Settings

    settings = Settings()
    from followup.core.program import load_program
    from followup.core.triage import answer_fields

    program = load_program(ROOT / settings.clinic.program, answer_fields())
    steps = sorted(program.steps, key=lambda s: s.offset)
    rnd, ids = random.Random(seed), Ids()  # noqa: S311 - synthetic data, reproducible by seed
    started = time.perf_counter()
    order = list(COLUMNS)
    with psycopg.connect(libpq(url), autocommit=False) as conn:
        conn.execute("SET session_replication_role = replica")  # no FK triggers during the load: ids are ours
        conn.execute("INSERT INTO apitoken (name, token_hash, created_at) VALUES ('bench', 'x', now())")
        conn.execute(
            "INSERT INTO staffuser (email, role, password_hash, created_at, updated_at) "
            "VALUES ('bench@clinic.example', 'admin', 'x', now(), now())"
        )
        chunk = 5000
        for lo in range(0, patients, chunk):
            rows: dict[str, list[tuple]] = {t: [] for t in COLUMNS}
            for i in range(lo, min(lo + chunk, patients)):
                for t, rs in patient_history(i, rnd, ids, steps, years).items():
                    rows[t].extend(rs)
            for t in order:
                if not rows[t]:
                    continue
                cols = ", ".join(f'"{c}"' for c in COLUMNS[t].split())
                with conn.cursor().copy(f'COPY "{t}" ({cols}) FROM STDIN') as cp:
                    for r in rows[t]:
                        cp.write_row(r)
            conn.commit()
        for t in order:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), {ids.n.get(t, 0) + 1}, false)")
        conn.commit()
        backfill = time.perf_counter()
        for stmt in SILENCE_BACKFILL:  # the columns services/silence.py keeps, as migration e7b2c9d4a1f6 fills them
            conn.execute(stmt)
        conn.commit()
        backfill = time.perf_counter() - backfill
    load = time.perf_counter() - started
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {
        "rows": dict(ids.n),
        "load_seconds": round(load, 1),
        "silence_backfill_seconds": round(backfill, 1),
        "db_bytes": size,
    }


# ---- measuring -----------------------------------------------------------------------------------------------


class Capture:
    """Every statement an operation runs, with its time: the slowest is the one to EXPLAIN."""

    def __init__(self, engine: Any) -> None:
        self.on = False
        self.slowest: tuple[float, str, Any] | None = None
        self.count = 0
        self.last: list[tuple[str, Any]] = []  # every statement of the latest sample
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, stmt: str, params: Any, context: Any, many: bool) -> None:
        conn.info["t0"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, stmt: str, params: Any, context: Any, many: bool) -> None:
        if not self.on:
            return
        self.count += 1
        if not many:
            self.last.append((stmt, params))
        took = time.perf_counter() - conn.info.pop("t0", time.perf_counter())
        if not many and (self.slowest is None or took > self.slowest[0]):
            self.slowest = (took, stmt, params)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p * (len(xs) - 1))))]


def measure(url: str, patients: int, samples: int, plans_path: str | None) -> dict[str, Any]:
    """Run every operation `samples` times (or for 20 s at most, at least 3) on the database at `url`."""
    sys.path.insert(1, str(ROOT / "tests"))
    from conftest import make_settings

    from followup.clock import FakeClock
    from followup.core.replies import Reply
    from followup.runtime import build_runtime
    from followup.services import delivery, digest, inbound, overview, privacy, rollup, roster, visits
    from followup.services import patients as api
    from followup.services.alerting import run_realerts
    from followup.services.dispatch import Dispatcher
    from followup.transports.recording import RecordingTransport

    settings = make_settings(url, dispatch={"per_sender_per_second": 1e9, "batch_size": 200})
    clock = FakeClock(NOW)
    transports = {"sms": RecordingTransport("sms", "+13105550100"), "email": RecordingTransport("email", "f@c.example")}
    rt = build_runtime(settings, clock=clock, transports=dict(transports))
    rt.detector  # noqa: B018 - loaded once, before timing
    cap = Capture(rt.db.engine)
    rnd = random.Random(1)  # noqa: S311 - picks sample rows
    eng = rt.db.engine
    with eng.connect() as c:
        active = [r[0] for r in c.execute(text("SELECT id FROM patient WHERE status = 'active' AND phone IS NOT NULL"))]
        any_patient = [r[0] for r in c.execute(text("SELECT id FROM patient ORDER BY random() LIMIT 200"))]
        esc_ids = [r[0] for r in c.execute(text("SELECT id FROM escalation ORDER BY random() LIMIT 200"))]
        sent = [
            tuple(r)
            for r in c.execute(
                text("SELECT id, provider_id FROM message WHERE status = 'sent' AND channel = 'sms' LIMIT 500")
            )
        ]
        names = [r[0] for r in c.execute(text("SELECT name FROM patient ORDER BY random() LIMIT 200"))]
        phones = [r[0] for r in c.execute(text("SELECT phone FROM patient WHERE phone IS NOT NULL LIMIT 200"))]
    counter = iter(range(10**9))

    def make_due() -> None:
        with eng.begin() as c:
            c.execute(
                text(
                    "UPDATE message SET due_at = :due WHERE id IN (SELECT m.id FROM message m JOIN patient p "
                    "ON p.id = m.patient_id WHERE m.status = 'scheduled' AND p.status = 'active' "
                    "ORDER BY m.id LIMIT 50)"
                ),
                {"due": NOW - timedelta(minutes=1)},
            )

    def reply() -> None:
        k = next(counter)
        body = RED_REPLY if k % 5 == 4 else "a bit better this week"
        pid = rnd.choice(active)
        inbound.receive(rt, Reply("sms", f"twilio:SMbench{k:024d}", f"+1555{pid - 1:07d}", body))

    def status() -> None:
        mid, sid = sent.pop()
        delivery.twilio_status(rt, {"MessageSid": sid, "MessageStatus": "delivered"}, mid)

    def run_digest() -> None:
        with rt.db.session() as s:
            digest.build_digest(rt, s, clock.now())

    purge_day = iter(range(1, 10**6))
    purged: list[dict[str, int]] = []

    def purge() -> None:
        purged.append(privacy.purge_old_texts(rt, now=NOW + timedelta(days=next(purge_day))))

    def purge_backlog() -> None:
        """Yesterday's purge, untimed: the generator marks texts purged by due date, the purge goes by creation
        date, so about 45 days were left to purge at NOW (the first sample was that backlog, not a day)."""
        if not purged:
            purged.append(privacy.purge_old_texts(rt, now=NOW))

    def at(offset: timedelta, fn: Callable[[], Any]) -> Callable[[], Any]:
        """`fn` run with the clock at NOW + `offset` (the clock is set back to NOW after)."""

        def run() -> Any:
            clock.set(NOW + offset)
            try:
                return fn()
            finally:
                clock.set(NOW)

        return run

    visit_cursor: list[int | None] = [None]

    def visits_next() -> None:
        """The upcoming visits page after the one before (the first again after the last)."""
        page = visits.upcoming_visits(rt, after=visit_cursor[0])
        visit_cursor[0] = getattr(page, "next_after", None)

    erase_ids = iter(any_patient[100:])
    ops: list[tuple[str, Callable[[], Any], Callable[[], None] | None]] = [
        ("dispatch: claim, send and record a batch of 50", lambda: Dispatcher(rt).run_once(), make_due),
        ("dispatch tick: stored replies to retry", lambda: inbound.work(rt), None),
        ("reply: store and act (1 in 5 a red flag)", reply, None),
        ("status callback (Twilio, delivered)", status, None),
        ("page: escalation queue", lambda: overview.escalation_queue(rt), None),
        ("page: escalation case file", lambda: overview.case_file(rt, rnd.choice(esc_ids)), None),
        ("page: patient search by name", lambda: roster.search(rt, rnd.choice(names).split()[0], None), None),
        ("page: patient search by phone", lambda: roster.search(rt, rnd.choice(phones)[-7:], None), None),
        ("page: patients, first page", lambda: roster.search(rt, None, None), None),
        ("page: patients not responding", lambda: roster.search(rt, None, "not_responding"), None),
        (
            "page: patient detail",
            lambda: (api.detail(rt, (p := rnd.choice(any_patient))), overview.patient_trend(rt, p)),
            None,
        ),
        # The job at 15:05 (its hourly run: the counts too; the first sample computes eight weeks), then at 15:55 (a
        # 10-minute run: what closed, the open days' snapshot); the page views at 16:00, five minutes after it.
        (
            "job: overview rollup, hourly run (first run: 8 weeks)",
            at(-timedelta(minutes=55), lambda: rollup.refresh(rt)),
            None,
        ),
        ("job: overview rollup, 10-minute run", at(-timedelta(minutes=5), lambda: rollup.refresh(rt)), None),
        ("page: overview", lambda: overview.overview(rt), None),
        ("page: upcoming visits", lambda: visits.upcoming_visits(rt), None),
        ("page: upcoming visits, next pages", visits_next, None),
        ("api: GET /api/patients", lambda: api.search(rt, None, None, 50, 0), None),
        ("api: GET /api/patients/{id}", lambda: api.detail(rt, rnd.choice(any_patient)), None),
        ("api: GET /api/escalations", lambda: api.escalations(rt, None, 100, 0), None),
        ("api: GET /api/escalations/{id}", lambda: api.escalation(rt, rnd.choice(esc_ids)), None),
        ("job: digest (built)", run_digest, None),
        ("job: re-alert pass", lambda: run_realerts(rt), None),
        ("job: retention purge of one day", purge, purge_backlog),
        ("patient export", lambda: privacy.export_patient(rt, rnd.choice(any_patient[:100])), None),
        ("patient erase", lambda: privacy.erase_patient(rt, next(erase_ids), "bench"), None),
    ]
    results: dict[str, Any] = {}
    plans: list[tuple[str, str, str]] = []
    for name, fn, setup in ops:
        times: list[float] = []
        cap.slowest, cap.count = None, 0
        t_end = time.perf_counter() + 20
        while len(times) < samples and (len(times) < 3 or time.perf_counter() < t_end):
            if setup:
                setup()
            cap.on, cap.last = True, []
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            cap.on = False
        results[name] = {
            "p50_ms": round(1000 * statistics.median(times), 1),
            "p95_ms": round(1000 * pct(times, 0.95), 1),
            "max_ms": round(1000 * max(times), 1),
            "n": len(times),
            "statements": round(cap.count / len(times), 1),
            # the shared buffers (8 KiB pages) the last sample's statements touch, from EXPLAIN (ANALYZE, BUFFERS):
            # the database work, whatever the machine's load
            "buffers": sum(buffers(eng, stmt, params) for stmt, params in cap.last),
        }
        print(name, results[name], file=sys.stderr, flush=True)
        if cap.slowest is not None:
            plans.append((name, cap.slowest[1], explain(eng, cap.slowest[1], cap.slowest[2])))
    if plans_path:
        with open(plans_path, "w") as f:
            f.write(f"# Plans at {patients:,} patients: the slowest statement of each operation\n\n")
            for name, stmt, plan in plans:
                f.write(f"## {name}\n\n```sql\n{stmt.strip()}\n```\n\n```\n{plan}\n```\n\n")
    results["job: retention purge of one day"]["rows"] = purged[1:]  # each sample's messages and replies
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rt.db.dispose()
    return {"ops": results, "peak_rss_mb": round(rss, 1)}


def explain(engine: Any, stmt: str, params: Any) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of one captured statement, rolled back (purges and erases change rows)."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + stmt, params)
        lines = [r[0] for r in cur.fetchall()]
        raw.rollback()
        return "\n".join(lines)
    except Exception as exc:  # a statement EXPLAIN cannot take (e.g. a COPY): say so rather than stop
        raw.rollback()
        return f"(no plan: {type(exc).__name__})"
    finally:
        raw.close()


def buffers(engine: Any, stmt: str, params: Any) -> int:
    """Shared buffers hit or read by one statement, run again under EXPLAIN and rolled back (0 if it cannot be)."""
    if not stmt.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "INSERT", "WITH")):
        return 0
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + stmt, params)
        plan = cur.fetchone()[0][0]
        raw.rollback()
        return int(plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0))
    except Exception:  # e.g. a statement whose row is gone after the sample (an erase): not counted
        raw.rollback()
        return 0
    finally:
        raw.close()


def throwaway(patients: int) -> Iterator[str]:
    admin = admin_url()
    name = f"followup_scale_{patients}_{uuid.uuid4().hex[:6]}"
    eng = create_engine(admin.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield admin.set(database=name).render_as_string(hide_password=False)
    with eng.connect() as c:
        c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"), {"d": name})
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    eng.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--years", type=float, default=2.0, help="enrolments spread evenly over this many years")
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--plans", help="write the EXPLAIN (ANALYZE, BUFFERS) of each operation's slowest statement here")
    ap.add_argument("--keep", action="store_true", help="keep the database (prints its URL) instead of dropping it")
    ap.add_argument("--build-only", action="store_true", help="build and keep the database; print its URL, last")
    ap.add_argument("--measure", help="measure the database built at this URL (migrated to head first)")
    args = ap.parse_args()
    if args.measure:
        upgrade(args.measure)  # a database kept by --build-only may predate a migration
        print(json.dumps(measure(args.measure, args.patients, args.samples, args.plans)), flush=True)
        return
    gen = throwaway(args.patients)
    url = next(gen)
    try:
        upgrade(url)
        built = build(make_url(url), args.patients, args.years, args.seed)
        print(f"built {args.patients:,} patients: {built}", file=sys.stderr, flush=True)
        if args.build_only:
            args.keep = True
            print(json.dumps({"patients": args.patients, **built, "url": url}), flush=True)
            return
        cmd = [sys.executable, __file__, "--measure", url, "--patients", str(args.patients)]
        cmd += ["--samples", str(args.samples)] + (["--plans", args.plans] if args.plans else [])
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout  # noqa: S603
        measured = json.loads(out.strip().splitlines()[-1])
    finally:
        if args.keep:
            print(f"kept: {url}", file=sys.stderr)
        else:
            next(gen, None)
    result = {
        "patients": args.patients,
        **built,
        "db_bytes_per_patient": round(built["db_bytes"] / args.patients),
        **measured,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
