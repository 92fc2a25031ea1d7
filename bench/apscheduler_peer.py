"""The peer a user would otherwise build, one APScheduler date job per message in its SQLAlchemy job store, against
ours (rows in our own tables, claimed by the dispatcher). Same cohort, same program, both on SQLite:

- enroll: the peer adds one job per planned message; ours runs the real triage (patient, consent, triage, audit
  and one row per planned message);
- dispatch a day: every message due in the first day, rendered and handed to a recording transport. The peer's
  day is fired at once (its run dates are in the past: APScheduler follows the wall clock); ours runs the
  dispatcher every 5 virtual minutes across the day, as a worker would.

    .venv/bin/python bench/apscheduler_peer.py [--patients 2000]

Each side runs in its own process (peak memory is per process). Prints one JSON line, last.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from _common import ROOT, emit

from followup.core.schedule import Window, planned_send
from followup.core.triage import TriageIn
from followup.db import upgrade
from followup.runtime import Runtime, build_runtime
from followup.settings import Settings
from followup.simulator.cohort import Cohort
from followup.transports.base import Outgoing
from followup.transports.recording import RecordingTransport

DAY = timedelta(days=1)
_SENT = {"n": 0}
_LOCK = threading.Lock()
_RT: dict[str, Runtime] = {}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def settings_for(url: str) -> Settings:
    return Settings().with_overrides(
        database={"url": url},
        clinic={
            "program": ROOT / "clinic/program.toml",
            "red_flags": ROOT / "clinic/red_flags.toml",
            "intake_rules": ROOT / "clinic/intake.toml",
            "keywords": ROOT / "clinic/keywords.toml",
            "templates": ROOT / "templates",
        },
        dispatch={"per_sender_per_second": 1e9},
        security={"secret_key": "bench-" + "k" * 40},
    )


def cohort_for(n: int, start: datetime) -> Cohort:
    return Cohort(1, n, start, timedelta(hours=1), triage_red_flag_rate=0.0)


def peer_send(phone: str, first_name: str, template: str, language: str, answers: dict[str, Any]) -> None:
    """The peer's job: render the step's text and hand it to the transport (what our dispatcher does)."""
    rt = _RT["rt"]
    ctx = {
        "clinic": {"name": rt.settings.clinic.name, "phone": rt.settings.clinic.phone},
        "patient": {"first_name": first_name, "language": language},
        "answers": answers,
        "week": 1,
    }
    body = rt.templates.render(template, "sms", language, ctx).body
    rt.transports["sms"].send(Outgoing(message_id=0, channel="sms", to=phone, body=body))
    with _LOCK:
        _SENT["n"] += 1


def run_peer(n: int, tmp: Path) -> dict[str, Any]:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    url = f"sqlite:///{tmp / 'peer.db'}"
    upgrade(url)  # the app's tables too, as the peer would still need patients; only templates are used here
    rt = build_runtime(
        settings_for(url), transports={"sms": RecordingTransport("sms"), "email": RecordingTransport("email")}
    )
    _RT["rt"] = rt
    window = Window(rt.settings.schedule.send_from, rt.settings.schedule.send_until)
    start = datetime.now(UTC) - DAY
    cohort = cohort_for(n, start)
    base = rss_mb()
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{tmp / 'jobs.db'}")},
        job_defaults={"misfire_grace_time": None, "coalesce": False},
        timezone=UTC,
    )
    scheduler.start(paused=True)
    t0 = time.perf_counter()
    jobs = due = 0
    for i in range(n):
        p = cohort.patient(i)
        answers = TriageIn.model_validate(cohort.triage_body(p)).answers
        for step in rt.program.steps_for(answers.for_program()):
            when = planned_send(step, p.enroll_at, ZoneInfo(p.timezone), window)
            scheduler.add_job(
                peer_send,
                "date",
                run_date=when,
                args=[p.phone, p.name.split()[0], step.template, p.language, answers.model_dump()],
                id=f"{i}:{step.id}",
            )
            jobs += 1
            due += when <= start + DAY
    enroll_s = time.perf_counter() - t0
    enroll_mb = rss_mb() - base
    t1 = time.perf_counter()
    scheduler.resume()
    while _SENT["n"] < due:
        time.sleep(0.01)
    dispatch_s = time.perf_counter() - t1
    scheduler.shutdown(wait=True)
    return {
        "messages_planned": jobs,
        "day_messages": _SENT["n"],
        "enroll_s": round(enroll_s, 2),
        "dispatch_day_s": round(dispatch_s, 2),
        "enroll_rss_mb": round(enroll_mb, 1),
        "peak_rss_mb": round(rss_mb(), 1),
    }


def run_ours(n: int, tmp: Path) -> dict[str, Any]:
    from sqlalchemy import func
    from sqlmodel import select

    from followup.clock import FakeClock
    from followup.models import Message
    from followup.services.dispatch import Dispatcher
    from followup.services.enrollment import submit_triage

    url = f"sqlite:///{tmp / 'ours.db'}"
    upgrade(url)
    start = datetime.now(UTC) - DAY
    clock = FakeClock(start)
    sms = RecordingTransport("sms")
    rt = build_runtime(settings_for(url), clock=clock, transports={"sms": sms, "email": RecordingTransport("email")})
    cohort = cohort_for(n, start)
    base = rss_mb()
    t0 = time.perf_counter()
    for i in range(n):
        p = cohort.patient(i)
        clock.set(p.enroll_at)
        submit_triage(rt, TriageIn.model_validate(cohort.triage_body(p)), source="api", actor="bench")
    enroll_s = time.perf_counter() - t0
    enroll_mb = rss_mb() - base
    with rt.db.session() as s:
        planned = s.exec(select(func.count()).select_from(Message)).one()
    dispatcher = Dispatcher(rt)
    t1 = time.perf_counter()
    now = start
    while now < start + DAY:
        now = min(now + timedelta(minutes=5), start + DAY)
        clock.set(now)
        dispatcher.run_once()
    dispatch_s = time.perf_counter() - t1
    dispatcher.close()
    return {
        "messages_planned": int(planned),
        "day_messages": len(sms.sent) + len(rt.transports["email"].sent),  # type: ignore[attr-defined]
        "enroll_s": round(enroll_s, 2),
        "dispatch_day_s": round(dispatch_s, 2),
        "enroll_rss_mb": round(enroll_mb, 1),
        "peak_rss_mb": round(rss_mb(), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=2000)
    p.add_argument("--side", choices=("peer", "ours"))
    args = p.parse_args()
    if args.side:
        with tempfile.TemporaryDirectory(prefix="followup-peer-") as tmp:
            result = (run_peer if args.side == "peer" else run_ours)(args.patients, Path(tmp))
        print(json.dumps(result), flush=True)
        return
    sides = {}
    for side in ("peer", "ours"):
        out = subprocess.run(  # noqa: S603 - this script, fixed arguments
            [sys.executable, __file__, "--side", side, "--patients", str(args.patients)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        sides[side] = json.loads(out.stdout.strip().splitlines()[-1])
        print(side, sides[side], flush=True)
    peer, ours = sides["peer"], sides["ours"]
    emit(
        {
            "bench": "apscheduler_peer",
            "patients": args.patients,
            "peer": peer,
            "ours": ours,
            "enroll_time_ratio_peer_over_ours": round(peer["enroll_s"] / ours["enroll_s"], 2),
            "dispatch_day_time_ratio_peer_over_ours": round(peer["dispatch_day_s"] / ours["dispatch_day_s"], 2),
            "peak_rss_ratio_peer_over_ours": round(peer["peak_rss_mb"] / ours["peak_rss_mb"], 2),
        }
    )


if __name__ == "__main__":
    main()
