"""Every scheduler job, registered in one place with one error guard.

The schedule itself lives in the project's tables, so any number of processes can run these jobs safely
(APScheduler's own job store could not). Each process runs:

- the ingest worker (a thread, `IngestWorker`): acts on the replies the webhooks stored and applies the delivery
  events they stored, in batches; woken at once by the web code of this process and, on PostgreSQL, by
  LISTEN/NOTIFY when any process stores a reply; it polls every `dispatch.interval_seconds` when nothing wakes it;
- `dispatch` (every `dispatch.interval_seconds`): a dispatcher pass (the ingest worker's own poll is the safety net
  for replies no wake-up reached);
- `realert` (every `alerts.check_seconds`): re-alert the next on-call tier for unacknowledged escalations, and
  place the phone calls an emergency re-alert queued (followup/services/voice.py);
- `webhooks` (every `webhooks.check_seconds`): deliver due signed outbound webhooks from the outbox;
- `digest` (daily at `alerts.digest_time`, clinic's zone): the routine-escalation digest email;
- `retention` (daily, first run five minutes after start): old message texts replaced by a marker;
- `overview` (every OVERVIEW_MINUTES): the overview's closed days into its rollup, its open days carried forward
  by what changed since the last run, once an hour the counts of patients enrolled and not responding, and every
  six hours the open days rebuilt from their rows (services/rollup.py), so that no page view reads more than
  minutes of messages.

A job that raises is logged (ids only) and runs again at its next time: one failure never stops the loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler

from followup.runtime import Runtime
from followup.services.alerting import run_realerts
from followup.services.delivery import BATCH as EVENTS_BATCH
from followup.services.delivery import apply_pending
from followup.services.digest import send_digest
from followup.services.dispatch import Dispatcher
from followup.services.inbound import NOTIFY_CHANNEL, work
from followup.services.ops import heartbeat, worker_id
from followup.services.privacy import purge_old_texts
from followup.services.rollup import refresh as refresh_overview
from followup.services.voice import place_queued
from followup.services.webhooks_out import deliver_due, forget_old

log = logging.getLogger("followup.jobs")
JOB_ID = "dispatch"
# How often the overview's open days are carried forward (a view adds what changed since); the enrolled and
# non-responder counts are redone once an hour.
OVERVIEW_MINUTES = 10
PLANNER_STATS_MINUTES = 60  # SQLite's index statistics (see `Database.refresh_planner_stats`)


def guarded(what: str, fn: Callable[[], object]) -> Callable[[], None]:
    """`fn`, logging and swallowing whatever it raises: the job's next run retries."""

    def run() -> None:
        try:
            fn()
        except Exception:
            log.exception("%s failed; the next run retries", what)

    return run


def realert_pass(rt: Runtime) -> None:
    """The `realert` job: re-alert overdue escalations, then place the phone calls queued (by this pass, or left
    queued by a crash)."""
    run_realerts(rt)
    place_queued(rt)


class IngestWorker:
    """Acts on stored replies in this process: a thread that claims and processes them (services/inbound.work), then
    applies stored delivery events in batches (services/delivery.apply_pending), whenever it is woken (this process
    stored something, or a PostgreSQL NOTIFY says another process stored a reply), and at least every
    `dispatch.interval_seconds`. Claims and row locks make any number of these, in any number of processes, share
    the work; acting stays exactly once."""

    BATCH = 20

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.interval = rt.settings.dispatch.interval_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._threads.append(threading.Thread(target=self._run, name="reply-worker", daemon=True))
        if self.rt.db.is_postgres:
            self._threads.append(threading.Thread(target=self._listen, name="reply-listener", daemon=True))
        for t in self._threads:
            t.start()
        self.rt.wake_ingest.append(self.wake)

    def stop(self) -> None:
        if self.wake in self.rt.wake_ingest:
            self.rt.wake_ingest.remove(self.wake)
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                while not self._stop.is_set() and work(self.rt, self.BATCH) >= self.BATCH:
                    pass  # a full batch: there may be more waiting
            except Exception:
                log.exception("reply worker pass failed; the next one retries")
            try:
                while not self._stop.is_set() and apply_pending(self.rt) >= EVENTS_BATCH:
                    pass
            except Exception:
                log.exception("delivery events pass failed; the next one retries")

    def _listen(self) -> None:
        """LISTEN on its own psycopg connection; each NOTIFY wakes the worker. A lost connection is opened again
        (the worker polls meanwhile)."""
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.rt.db.url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._wake.set()  # replies stored while not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._wake.set()
            except Exception:
                log.warning("reply listener lost its PostgreSQL connection; listening again shortly")
                self._stop.wait(self.interval)


class DispatchLoop:
    """The process's scheduler: the dispatch job and the clinic's jobs, started and stopped together."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.dispatcher = Dispatcher(rt)
        self.worker = worker_id()
        self.replies = IngestWorker(rt)
        self.started_at = rt.clock.now()
        self.scheduler = BackgroundScheduler(timezone=UTC)
        settings = rt.settings
        self.scheduler.add_job(
            guarded("dispatch pass", self._tick),
            "interval",
            seconds=settings.dispatch.interval_seconds,
            id=JOB_ID,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=60,
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.add_job(
            guarded("re-alert pass", lambda: realert_pass(rt)),
            "interval",
            seconds=settings.alerts.check_seconds,
            id="realert",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=300,
        )
        self.scheduler.add_job(
            guarded("webhook delivery", lambda: deliver_due(rt)),
            "interval",
            seconds=settings.webhooks.check_seconds,
            id="webhooks",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=300,
            next_run_time=datetime.now(UTC),
        )
        at = settings.alerts.digest_time
        self.scheduler.add_job(
            guarded("daily digest", lambda: send_digest(rt)),
            "cron",
            hour=at.hour,
            minute=at.minute,
            timezone=ZoneInfo(settings.clinic.timezone),
            id="digest",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=3600,
        )
        self.scheduler.add_job(
            guarded("overview rollup", lambda: refresh_overview(rt)),
            "interval",
            minutes=OVERVIEW_MINUTES,
            id="overview",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=600,
            next_run_time=datetime.now(UTC) + timedelta(seconds=30),
        )
        self.scheduler.add_job(
            guarded("planner statistics", rt.db.refresh_planner_stats),
            "interval",
            minutes=PLANNER_STATS_MINUTES,
            id="planner-stats",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=600,
            next_run_time=datetime.now(UTC) + timedelta(seconds=60),
        )
        if settings.privacy.retention_days:  # 0 keeps texts for ever
            self.scheduler.add_job(
                guarded("retention purge", self._purge),
                "interval",
                hours=24,
                id="retention",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=3600,
                next_run_time=datetime.now(UTC) + timedelta(minutes=5),
            )

    def _tick(self) -> None:
        report = self.dispatcher.run_once()
        guarded("heartbeat", lambda: heartbeat(self.rt, self.worker, self.started_at, report.claimed, report.sent))()
        if report.claimed or report.reconciled:
            log.info(
                "dispatch: claimed %d sent %d retried %d failed %d expired %d deferred %d cancelled %d reconciled %d",
                report.claimed,
                report.sent,
                report.retried,
                report.failed,
                report.expired,
                report.deferred,
                report.cancelled,
                report.reconciled,
            )

    def _purge(self) -> None:
        done = purge_old_texts(self.rt)
        forgotten = forget_old(self.rt)
        if forgotten:
            log.info("retention purge: %d finished webhook deliveries", forgotten)
        if done["messages"] or done["inbound"]:
            log.info("retention purge: %d messages and %d replies", done["messages"], done["inbound"])

    def wake(self) -> None:
        """Run a pass now (after a commit that queued urgent messages)."""
        try:
            self.scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC))
        except Exception:  # the scheduler is stopping; the next start runs a pass anyway
            log.debug("wake ignored: scheduler not running")

    def start(self) -> None:
        self.scheduler.start()
        self.rt.wake_dispatcher.append(self.wake)
        self.replies.start()

    def stop(self) -> None:
        self.replies.stop()
        if self.wake in self.rt.wake_dispatcher:
            self.rt.wake_dispatcher.remove(self.wake)
        self.scheduler.shutdown(wait=True)
        self.dispatcher.close()
