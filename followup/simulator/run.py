"""The time-travel loop: enroll, deliver webhooks and replies at their moments, run the dispatcher every tick.

The real services do the work (`submit_triage`, `Dispatcher.run_once`, `inbound.receive`, the webhooks'
`delivery.store_twilio` and `delivery.store_sendgrid`, the ingest worker's `delivery.apply_pending`); the simulator
only moves a `FakeClock` and plays the patients and the providers. Idle stretches (nights, quiet weeks) are
skipped: the clock jumps to the next moment anything is due.
"""

from __future__ import annotations

import logging
import resource
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import SQLModel, select

from followup.clock import FakeClock
from followup.core.bulk import RawRow
from followup.core.storable import storable
from followup.core.vocab import MessageState
from followup.db import upgrade
from followup.jobs import JOB_ID, DispatchLoop
from followup.models import Patient
from followup.runtime import Runtime, build_runtime
from followup.services import delivery
from followup.services.bulk_import import Outcome, import_rows
from followup.services.inbound import receive
from followup.settings import Settings
from followup.simulator.ahead import HORIZON, ReadAhead
from followup.simulator.cohort import Cohort
from followup.simulator.config import SimConfig
from followup.simulator.provider import Event, SimProvider
from followup.simulator.report import summarise
from followup.simulator.staff import Staff

log = logging.getLogger("followup.simulate")
DRAIN = timedelta(hours=1)  # after the end: callbacks and retries settle, nothing new is enrolled or replied
SIM_ONCALL_SMS, SIM_ONCALL_EMAIL = "+13105550199", "oncall@clinic.example"


Progress = Callable[[float], None]  # hours of virtual time done so far


def simulate(base: Settings, cfg: SimConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the whole program for a synthetic cohort on a virtual clock; return the summary (see `report`)."""
    started = time.perf_counter()
    errors = _ErrorCount()
    logging.getLogger("followup").addHandler(errors)
    tmp = None
    url = cfg.database_url
    if url is None:
        tmp = Path(tempfile.mkdtemp(prefix="followup-sim-"))
        url = f"sqlite:///{tmp / 'sim.db'}"
    try:
        upgrade(url)
        settings = _sim_settings(base, url)
        clock = FakeClock(cfg.start)
        cohort = Cohort(cfg.seed, cfg.patients, cfg.start, timedelta(days=min(cfg.enroll_days, cfg.days)))
        window = (settings.schedule.send_from, settings.schedule.send_until)
        provider = SimProvider(clock, cohort, cfg.rates, cfg.seed, window)
        rt = build_runtime(settings, clock=clock, transports=dict(provider.transports))
        screen = rt.detector
        ahead = ReadAhead(screen, settings.clinic.red_flags) if cfg.read_ahead and screen.model is not None else None
        try:
            _refuse_used_database(rt)
            with ahead or nullcontext():
                loop = _Loop(rt, clock, cohort, provider, cfg, progress, ahead)
                loop.run()
            summary = summarise(rt, provider, cfg, loop.end, loop.stats)
            summary["staff_actions"] = dict(loop.staff.done)
            if ahead is not None:
                summary["read_ahead"] = {k: ahead.stats[k] for k in ("ahead", "inline", "unused")}
        finally:
            rt.db.dispose()
    finally:
        logging.getLogger("followup").removeHandler(errors)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    summary["errors_logged"] = errors.count
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    summary["wall_ms_per_patient"] = round(1000 * summary["wall_seconds"] / max(cfg.patients, 1), 2)
    summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return summary


class SimulationError(Exception):
    """The simulation cannot run as asked (the message says why)."""


class _ErrorCount(logging.Handler):
    """Counts errors the services log (a failed pass is logged and retried, so it would otherwise go unseen)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _sim_settings(base: Settings, url: str) -> Settings:
    clinic: dict[str, Any] = {}
    if not base.clinic.oncall_sms and not base.clinic.oncall_email:
        clinic = {"oncall_sms": [SIM_ONCALL_SMS], "oncall_email": [SIM_ONCALL_EMAIL]}
    return base.with_overrides(
        database={"url": url},
        clinic=clinic,
        # Pacing is in real seconds and would only slow a virtual day down; the simulator's provider has no limit.
        dispatch={"per_sender_per_second": 1e9, "enabled": False},
        security={"secret_key": base.security.secret_key or secrets.token_urlsafe(48)},
    )


def _refuse_used_database(rt: Runtime) -> None:
    with rt.db.session() as s:
        if s.exec(select(func.count()).select_from(Patient)).one():
            raise SimulationError("the simulation database already has patients: give it an empty database")


class _Loop:
    def __init__(
        self,
        rt: Runtime,
        clock: FakeClock,
        cohort: Cohort,
        provider: SimProvider,
        cfg: SimConfig,
        progress: Progress | None,
        ahead: ReadAhead | None = None,
    ) -> None:
        self.rt, self.clock, self.cohort, self.provider, self.cfg = rt, clock, cohort, provider, cfg
        self.progress = progress
        self.ahead = ahead
        self.end = cfg.start + timedelta(days=cfg.days)
        self.loop = DispatchLoop(rt)  # never started: the simulator calls its jobs on the virtual clock
        self.jobs = _OtherJobs(self.loop.scheduler, cfg.start)
        self.staff = Staff(cfg.seed)
        self.escalated = False
        self.next_patient = 0
        self.next_enroll_at = self._enroll_at(0)
        self.stats: dict[str, int] = {
            "ticks": 0,
            "enrolled": 0,
            "replies_delivered": 0,
            "duplicate_inbound": 0,
            "twilio_callbacks": 0,
            "sendgrid_events": 0,
        }

    def _enroll_at(self, index: int) -> datetime | None:
        """Patient i enrolls in the i-th slot of the enrollment span (a random moment within it)."""
        if index >= self.cfg.patients:
            return None
        span = self.cohort.enroll_span / self.cfg.patients
        return self.cfg.start + span * index + span * self.cohort.rng(index, "slot").random()

    def run(self) -> None:
        try:
            now = self.cfg.start
            while now < self.end:
                self._events_until(now, replies=True)
                self._read_ahead(now)
                now = min(self._step(now), self.end)
                self._progress(now)
            self._events_until(self.end, replies=True)
            self._tick(self.end)
            drain_end, now = self.end + DRAIN, self.end
            while now < drain_end:  # let callbacks arrive and ambiguous sends reconcile; no new patient activity
                now = min(now + self.cfg.tick, drain_end)
                self._events_until(now, replies=False)
                self._tick(now)
        finally:
            self.loop.dispatcher.close()

    def _read_ahead(self, now: datetime) -> None:
        """Start embedding the replies of the next half hour in the second process while this step dispatches."""
        if self.ahead is not None:
            due = self.provider.replies_between(now, now + HORIZON)
            self.ahead.ahead(((at, storable(reply.body)) for at, (reply, _) in due), now)

    def _progress(self, now: datetime) -> None:
        if self.progress is not None:
            self.progress((now - self.cfg.start).total_seconds() / 3600)

    def _tick(self, now: datetime) -> None:
        """One run of the scheduler's interval job (one dispatcher pass), then the ingest worker's pass over the
        delivery events the webhooks stored (`IngestWorker` does both in a running process)."""
        self.clock.set(now)
        self.stats["ticks"] += 1
        self.loop._tick()
        self._apply_events()

    def _apply_events(self) -> None:
        while delivery.apply_pending(self.rt) >= delivery.BATCH:
            pass

    def _step(self, now: datetime) -> datetime:
        """Run the dispatcher if anything is due, and return the next moment anything can happen: never sooner
        than one tick, and no later than the next event, enrollment, due message or lease to run out. (A tick with
        nothing due would find nothing: skipping it changes no outcome, only the time the run takes.)"""
        self.jobs.run_due(now, self.clock)
        if self.escalated:  # only a triage or a reply opens an escalation: look for new ones after those
            self.staff.watch(self.rt, self.provider.push)
            self.escalated = False
        due = self._db_next()
        if due is not None and due <= now:
            self._tick(now)
            due = self._db_next()
        else:
            self._apply_events()  # the ingest worker's poll: callbacks stored since the last pass
        candidates = [t for t in (self.provider.next_at(), self.next_enroll_at, due) if t is not None]
        return max(now + self.cfg.tick, min(candidates)) if candidates else self.end

    def _db_next(self) -> datetime | None:
        """The earliest due message or lease to run out (one round trip: it is asked at every step)."""
        with self.rt.db.session() as s:
            row = s.connection().execute(_NEXT_DUE).one()
        times = [_aware(t) for t in row if t is not None]
        return min(times) if times else None

    def _events_until(self, until: datetime, *, replies: bool) -> None:
        """Deliver webhooks and replies due by `until`, each at its own moment (SendGrid events that fall due
        together go in one batch, as SendGrid posts them), then enroll the patients whose triage arrived by `until`:
        the clinic posts them as one batch (`POST /api/triage/batch`), at most one step after their own moment (the
        loop steps onto an enrollment when nothing comes sooner, so a small cohort enrolls each at its moment)."""
        batch: list[dict[str, Any]] = []
        arrived: list[int] = []
        while replies and self.next_enroll_at is not None and self.next_enroll_at <= until:
            arrived.append(self.next_patient)
            self.next_patient += 1
            self.next_enroll_at = self._enroll_at(self.next_patient)
        while True:
            ev = self.provider.pop_due(until)
            if ev is None:
                break
            if ev.kind == "sendgrid_event":
                batch.append(ev.payload)
                self.clock.set(max(ev.at, self.clock.now()))
                if len(batch) >= 100:
                    self._flush(batch)
                continue
            self._flush(batch)
            self._deliver(ev, replies)
        self._flush(batch)
        if arrived:
            self._enroll(arrived, until)

    def _enroll(self, indexes: list[int], at: datetime) -> None:
        """The clinic's batch of triages, through the bulk path (each row checked as `POST /api/triage` checks one;
        a red flag escalates)."""
        self.clock.set(max(at, self.clock.now()))
        rows = [RawRow(i, self._triage_row(i)) for i in indexes]
        refused: list[str] = []

        def report(o: Outcome) -> None:
            if o.status in ("rejected", "already"):
                refused.append(f"row {o.where}: {o.status} {o.field or ''} {o.message or ''}".strip())

        tally = import_rows(self.rt, rows, actor="simulator", source="api", report=report)
        if refused:
            raise SimulationError("the simulated clinic's triage was refused: " + "; ".join(refused[:3]))
        self.escalated |= tally.escalated > 0
        self.stats["enrolled"] += tally.enrolled + tally.escalated

    def _triage_row(self, index: int) -> dict[str, Any]:
        return {"external_id": f"sim-{index}", **self.cohort.triage_body(self.cohort.patient(index))}

    def _deliver(self, ev: Event, replies: bool) -> None:
        self.clock.set(max(ev.at, self.clock.now()))
        if ev.kind == "twilio_status":
            form, message_id = ev.payload
            delivery.store_twilio(self.rt, form, message_id)  # what the webhook does; the tick's worker applies it
            self.stats["twilio_callbacks"] += 1
        elif ev.kind == "staff" and replies:
            esc_id, action = ev.payload
            self.staff.act(self.rt, esc_id, action)
        elif ev.kind == "reply" and replies:
            reply, label = ev.payload
            result = receive(self.rt, reply)
            self.escalated |= result.escalation_id is not None or result.intent == "pending"
            if result.duplicate:
                self.stats["duplicate_inbound"] += 1
            else:
                self.stats["replies_delivered"] += 1
                self.provider.replies[label] += 1

    def _flush(self, batch: list[dict[str, Any]]) -> None:
        if batch:
            delivery.store_sendgrid(self.rt, list(batch))
            self.stats["sendgrid_events"] += len(batch)
            batch.clear()


class _OtherJobs:
    """The scheduler's other jobs (re-alerts of unacknowledged escalations, the daily digest, retention), each run on
    the virtual clock when the loop passes its next fire time: at the loop's granularity, so at most a tick late.
    Whatever jobs `DispatchLoop` registers are run, so the simulation follows the real scheduler."""

    def __init__(self, scheduler: Any, start: datetime) -> None:
        self.jobs: list[tuple[Any, datetime | None]] = [
            (job, job.trigger.get_next_fire_time(None, start)) for job in scheduler.get_jobs() if job.id != JOB_ID
        ]

    def run_due(self, now: datetime, clock: FakeClock) -> None:
        for i, (job, at) in enumerate(self.jobs):
            if at is None or at > now:
                continue
            clock.set(now)
            job.func(*job.args, **job.kwargs)
            following = job.trigger.get_next_fire_time(at, now)
            while following is not None and following <= now:  # coalesce missed runs into this one
                following = job.trigger.get_next_fire_time(following, now)
            self.jobs[i] = (job, following)


_MESSAGE = SQLModel.metadata.tables["message"]
_NEXT_DUE = select(  # built once: asked at every step of the loop
    select(func.min(_MESSAGE.c.due_at)).where(_MESSAGE.c.status == MessageState.SCHEDULED).scalar_subquery(),
    select(func.min(_MESSAGE.c.lease_until))
    .where(_MESSAGE.c.status.in_((MessageState.CLAIMED, MessageState.SENDING)))
    .scalar_subquery(),
)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
