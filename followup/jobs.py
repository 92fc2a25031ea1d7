"""Every scheduler job, registered in one place with one error guard.

The schedule itself lives in the project's tables, so any number of processes can run these jobs safely
(APScheduler's own job store could not). Each process runs:

- `dispatch` (every `dispatch.interval_seconds`): retry stored replies not yet acted on, then a dispatcher pass;
- `realert` (every `alerts.check_seconds`): re-alert the next on-call tier for unacknowledged escalations, and
  place the phone calls an emergency re-alert queued (followup/services/voice.py);
- `webhooks` (every `webhooks.check_seconds`): deliver due signed outbound webhooks from the outbox;
- `digest` (daily at `alerts.digest_time`, clinic's zone): the routine-escalation digest email;
- `retention` (daily, first run five minutes after start): old message texts replaced by a marker;
- `overview` (every OVERVIEW_MINUTES): the overview's closed days into its rollup, and the counts of patients
  enrolled and not responding (services/rollup.py), so that no page view reads eight weeks of messages.

A job that raises is logged (ids only) and runs again at its next time: one failure never stops the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler

from followup.runtime import Runtime
from followup.services.alerting import run_realerts
from followup.services.digest import send_digest
from followup.services.dispatch import Dispatcher
from followup.services.inbound import process_pending
from followup.services.ops import heartbeat, worker_id
from followup.services.privacy import purge_old_texts
from followup.services.rollup import refresh as refresh_overview
from followup.services.voice import place_queued
from followup.services.webhooks_out import deliver_due, forget_old

log = logging.getLogger("followup.jobs")
JOB_ID = "dispatch"
# How stale the overview's enrolled and non-responder counts may be; the rest is read at each view.
OVERVIEW_MINUTES = 10


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


class DispatchLoop:
    """The process's scheduler: the dispatch job and the clinic's jobs, started and stopped together."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.dispatcher = Dispatcher(rt)
        self.worker = worker_id()
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
        guarded("retrying stored replies", lambda: process_pending(self.rt))()
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

    def stop(self) -> None:
        if self.wake in self.rt.wake_dispatcher:
            self.rt.wake_dispatcher.remove(self.wake)
        self.scheduler.shutdown(wait=True)
        self.dispatcher.close()
