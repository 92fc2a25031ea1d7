"""The in-process scheduler: one APScheduler interval job that runs a dispatcher pass. The schedule itself lives
in the project's tables, so any number of processes can run this safely (APScheduler's job store cannot)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from followup.runtime import Runtime
from followup.services.alerting import add_clinic_jobs
from followup.services.dispatch import Dispatcher
from followup.services.inbound import process_pending
from followup.services.privacy import add_retention_job

log = logging.getLogger("followup.scheduler")
JOB_ID = "dispatch"


class DispatchLoop:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.dispatcher = Dispatcher(rt)
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self.scheduler.add_job(
            self._tick,
            "interval",
            seconds=rt.settings.dispatch.interval_seconds,
            id=JOB_ID,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=60,
            next_run_time=datetime.now(UTC),
        )
        add_clinic_jobs(self.scheduler, rt)  # re-alerts of unacknowledged escalations, the daily digest
        add_retention_job(self.scheduler, rt)  # old message texts replaced by a marker, daily

    def _tick(self) -> None:
        try:
            process_pending(self.rt)
        except Exception:
            log.exception("retrying stored replies failed; the next pass retries")
        try:
            report = self.dispatcher.run_once()
        except Exception:
            log.exception("dispatch pass failed; the next pass retries")
            return
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
