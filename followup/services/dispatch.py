"""The dispatcher: claim due messages under a lease, decide, render, send concurrently, record.

One pass (`run_once`) is what the scheduler's interval job calls. Nothing is sent twice: a message is marked
`sending` (committed) before the provider is called, and a `sending` message whose lease ran out is reconciled
with the provider before it may be tried again.
"""

from __future__ import annotations

import logging
import random
import socket
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, Update, and_, bindparam, case, inspect, or_, update
from sqlmodel import Session, SQLModel, col, select

from followup import metrics
from followup import models as m
from followup.content.templates import TemplateProblem
from followup.core.pacing import Pace
from followup.core.schedule import Defer, Expire, Window, decide_send
from followup.core.vocab import FINISHED, Channel, MessageKind, MessageState, PatientStatus
from followup.models import Message, Patient
from followup.runtime import Runtime
from followup.services import silence
from followup.services.confirmation import HOLD_UNCONFIRMED, confirmed
from followup.services.context import message_context
from followup.services.pacing import SharedPacer
from followup.settings import send_in_flight_seconds
from followup.transports.base import LookupUnavailable, Outgoing, SendError, Sent

log = logging.getLogger("followup.dispatch")
HOLD_RETRY = timedelta(hours=1)
PACING_MARGIN = 0.9


@dataclass
class PassReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    expired: int = 0
    deferred: int = 0
    cancelled: int = 0
    reconciled: int = 0
    paced: int = 0  # put back untried: their sender had no slot within the lease (other workers took them)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Job:
    message_id: int
    out: Outgoing
    attempts: int
    patient_id: int | None = None
    kind: str = ""
    send_by: datetime | None = None  # not started after this, the lease could run out while it is in flight
    start_at: float = 0.0  # its pacing slot (wall clock, seconds since the epoch): not started before


@dataclass(frozen=True)
class _Outcome:
    job: _Job
    sent: Sent | None = None
    error: SendError | None = None
    late: bool = False  # never tried: its lease was too close to running out (see `_send_by`)


class Dispatcher:
    def __init__(self, rt: Runtime, owner: str | None = None) -> None:
        self.rt = rt
        self.owner = owner or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        cfg = rt.settings.dispatch
        self.pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="send")
        # Pace 10% under the limit: requests reach the provider a few ms apart from when they were paced, and at
        # exactly the limit the provider counted one send too many in some second (tests/test_faults.py). The
        # bucket is a database row per sender, shared by every worker process (services/pacing.py).
        self.pacer = SharedPacer(Pace(cfg.per_sender_per_second * PACING_MARGIN))
        # No bigger batch than pacing lets go out in half a lease (nor within the sending horizon): batches overlap
        # (one sending, the next waiting), and a message not started in time is put back untried (see `_send_by`),
        # so a bigger one would only churn.
        window = min([cfg.lease_seconds / 2, *(self._horizon(channel) for channel in rt.transports)])
        sendable = cfg.per_sender_per_second * PACING_MARGIN * window
        self.batch_limit = max(1, min(cfg.batch_size, int(sendable)))
        self.window = Window(rt.settings.schedule.send_from, rt.settings.schedule.send_until)
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self._warmed = False

    def _warm(self) -> None:
        """Load each transport's SDK before the first slot is reserved: a worker's first batch spent that second
        after its slots had started, then sent them at its own pace alongside the other workers' on-time sends."""
        if not self._warmed:
            for transport in self.rt.transports.values():
                warm = getattr(transport, "warm", None)
                if warm is not None:
                    warm()
            self._warmed = True

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    # ---- one pass --------------------------------------------------------------------------------------------
    def run_once(self) -> PassReport:
        """Claim, prepare, send and record batches until none is full. Batches overlap: the next one is claimed
        and prepared while the previous one is still being sent, so the senders never wait for the database."""
        report = PassReport()
        self._warm()
        self.reconcile(report)
        in_flight: list[Future[_Outcome]] = []
        try:
            while True:
                limit, channels = self._room()
                ids = self.claim(limit, channels) if limit else []
                report.claimed += len(ids)
                paced_before = report.paced
                jobs = self.prepare(ids, report) if ids else []
                sending = [self.pool.submit(self._send, job) for job in jobs]
                self.record([f.result() for f in in_flight], report)
                in_flight = sending
                if len(ids) < limit or not ids or report.paced > paced_before:
                    break  # the queue is drained, or a sender's slots are all taken for now: claim again next pass
        finally:
            # Sends already started finish and are recorded; if recording fails they stay `sending` and are
            # reconciled with the provider after their lease.
            outcomes = [f.result() for f in in_flight]
        self.record(outcomes, report)
        return report

    def _room(self) -> tuple[int, list[str] | None]:
        """How many messages to claim, and on which channels (None: all): no more than pacing could slot within
        the lease."""
        rooms: dict[str, int] = {}
        with self.rt.db.session() as s:
            for channel, transport in self.rt.transports.items():
                rooms[channel] = self.pacer.room(s, transport.sender, self._horizon(channel), self.batch_limit)
        open_ = [c for c, n in rooms.items() if n > 0]
        return min(self.batch_limit, sum(rooms.values())), None if len(open_) == len(rooms) else open_

    def _horizon(self, channel: str) -> float:
        """Seconds from now to the last moment a send claimed now may start (see `_send_by`)."""
        return self.rt.settings.dispatch.lease_seconds - self._in_flight(channel)

    def _in_flight(self, channel: str) -> float:
        """The longest a send on `channel` can still be on its way after it starts (settings.send_in_flight_seconds)."""
        cfg = self.rt.settings
        timeout = cfg.twilio.timeout_seconds if channel == Channel.SMS else cfg.sendgrid.timeout_seconds
        return send_in_flight_seconds(timeout, cfg.dispatch.lookup_settle_seconds)

    def claim(self, limit: int | None = None, channels: Sequence[str] | None = None) -> list[int]:
        """Atomically take up to `limit` (default `batch_limit`) due messages, of `channels` (default all), the
        urgent ones first: FOR UPDATE SKIP LOCKED on PostgreSQL; on SQLite the single writer makes the conditional
        UPDATE atomic. Two statements in one transaction, each an index range bounded by its LIMIT (urgent ones
        from ix_message_urgent_due, then the rest by due_at from ix_message_due): one ORDER BY urgent, due_at
        sorted the whole backlog at peak hour (74 ms, on disk, for 100,000 due: migration f3a1b2c4d5e6)."""
        now = self.rt.clock.now()
        lease = now + timedelta(seconds=self.rt.settings.dispatch.lease_seconds)
        want = self.batch_limit if limit is None else limit
        ids: list[int] = []
        params: dict[str, Any] = {"b_now": now, "b_lease": lease, "b_owner": self.owner}
        if channels is not None:
            params["b_channels"] = list(channels)
        with self.rt.db.session() as s:
            conn = s.connection()
            for urgent_only in (True, False):
                if len(ids) >= want:
                    break
                stmt = _claim_statement(urgent_only, channels is not None)
                ids += [row[0] for row in conn.execute(stmt, {**params, "b_limit": want - len(ids)})]
            s.commit()
        return ids

    def prepare(self, ids: Sequence[int], report: PassReport) -> list[_Job]:
        """Decide each claimed message; the ones to send are rendered and marked `sending` in one commit."""
        now = self.rt.clock.now()
        jobs: list[_Job] = []
        with self.rt.db.session() as s:
            # Row locks (PostgreSQL; SQLite's snapshot refuses a stale write instead): a dispatcher recovering these
            # rows after a long stall must not re-queue them between this read and this commit, or both writes
            # land and the message goes twice (tests/test_workers_pg.py, database outage).
            msgs = list(s.exec(_LOCK_MESSAGES, params={"b_ids": list(ids)}).all())
            msgs.sort(key=lambda x: (not x.urgent, x.due_at, x.id or 0))  # urgent ones get the earliest slots
            pids = {x.patient_id for x in msgs if x.patient_id is not None}
            patients = {p.id: p for p in s.exec(_PATIENTS, params={"b_ids": list(pids)}).all()} if pids else {}
            answers = _latest_answers(s, pids)
            decided: list[Message] = []
            for msg in msgs:
                if msg.status != MessageState.CLAIMED or msg.lease_owner != self.owner:
                    continue
                decided.append(msg)
                patient = patients.get(msg.patient_id) if msg.patient_id is not None else None
                job = self._prepare_one(s, msg, patient, answers.get(msg.patient_id or -1, {}), now, report)
                if job is not None:
                    jobs.append(job)
            jobs = self._pace(s, jobs, {x.id: x for x in msgs}, now, report)
            # One executemany for the batch instead of the ORM's flush (its bookkeeping per object cost more than
            # the statement), of the columns deciding set, as the ORM recorded them (`committed_state`: the loaded
            # value of every attribute set since). The rows are the ones read above, locked (or, on SQLite, a stale
            # write is refused).
            columns = tuple(sorted({k for x in decided for k in inspect(x).committed_state}))
            if columns:
                rows = [{"b_id": x.id, **{f"b_{k}": getattr(x, k) for k in columns}} for x in decided]
                s.expunge_all()
                s.connection().execute(_write_decided(columns), rows)
            s.commit()
        return jobs

    def _pace(
        self, s: Session, jobs: list[_Job], msgs: dict[int | None, Message], now: datetime, report: PassReport
    ) -> list[_Job]:
        """Reserve each sender's slots for its jobs, in the transaction that marks them `sending` (one statement a
        sender). A job that got no slot before its lease runs short goes back to the queue untried."""
        by_sender: dict[str, list[_Job]] = {}
        for job in jobs:
            by_sender.setdefault(self.rt.transports[job.out.channel].sender, []).append(job)
        paced: list[_Job] = []
        for sender, group in by_sender.items():
            lease = float(self.rt.settings.dispatch.lease_seconds)
            horizon = min(((j.send_by - now).total_seconds() for j in group if j.send_by is not None), default=lease)
            slots = self.pacer.reserve(s, sender, len(group), max(0.0, horizon))
            paced += [replace(job, start_at=at) for job, at in zip(group, slots, strict=False)]
            for job in group[len(slots) :]:
                msg = msgs[job.message_id]
                _reschedule(msg, msg.due_at, "no sending slot for its sender within the lease; back in the queue")
                msg.attempts -= 1
                report.paced += 1
        paced.sort(key=lambda j: j.start_at)
        return paced

    def _prepare_one(
        self,
        s: Session,
        msg: Message,
        patient: Patient | None,
        answers: dict[str, Any],
        now: datetime,
        report: PassReport,
    ) -> _Job | None:
        msg.updated_at = now
        to = msg.to
        tz = ZoneInfo(patient.timezone if patient else self.rt.settings.clinic.timezone)
        if patient is not None:
            held_now = held(patient, msg)
            if held_now is not None:
                kind, reason = held_now
                if kind == "cancel":
                    _finish(msg, MessageState.CANCELLED, reason)
                    report.cancelled += 1
                    return None
                if now + HOLD_RETRY > msg.expires_at:
                    _finish(msg, MessageState.EXPIRED, f"{reason} until past its time-to-live")
                    report.expired += 1
                else:
                    _reschedule(msg, now + HOLD_RETRY, reason)
                    report.deferred += 1
                return None
            to = patient.phone if msg.channel == Channel.SMS else patient.email
        if not to:
            _finish(msg, MessageState.CANCELLED, f"no {msg.channel} contact")
            report.cancelled += 1
            return None
        decision = decide_send(
            now=now,
            due_at=msg.due_at,
            expires_at=msg.expires_at,
            urgent=msg.urgent,
            tz=tz,
            window=self.window,
        )
        if isinstance(decision, Expire):
            _finish(msg, MessageState.EXPIRED, decision.reason)
            report.expired += 1
            return None
        if isinstance(decision, Defer):
            _reschedule(msg, decision.until, decision.reason)
            report.deferred += 1
            return None
        try:
            ctx = message_context(self.rt, msg, patient, answers)
            language = patient.language if patient else "en"
            rendered = self.rt.templates.render(msg.template, msg.channel, language, ctx)
        except TemplateProblem as exc:
            _finish(msg, MessageState.FAILED, f"template problem: {exc}")
            report.failed += 1
            log.error("message %s: template %s failed to render", msg.id, msg.template)
            return None
        msg.to, msg.body, msg.subject = to, rendered.body, rendered.subject
        msg.segments = rendered.segments[1] if msg.channel == Channel.SMS else None
        msg.status, msg.send_started_at = MessageState.SENDING, now
        msg.attempts += 1
        reply_to = f"{patient.reply_token}@{self.rt.settings.sendgrid.reply_domain}" if patient else None
        assert msg.id is not None
        out = Outgoing(
            message_id=msg.id,
            channel=msg.channel,
            to=to,
            body=rendered.body,
            subject=rendered.subject,
            html=rendered.html,
            reply_to=reply_to if msg.channel == Channel.EMAIL else None,
            tags={"kind": msg.kind},
        )
        return _Job(msg.id, out, msg.attempts, msg.patient_id, msg.kind, self._send_by(msg))

    def _send_by(self, msg: Message) -> datetime | None:
        """The last moment a send may start: the lease must outlive the whole provider call (connect and read
        timeouts, and the provider's settle time), or another dispatcher could reconcile the message, find nothing
        at the provider yet, and send it a second time. This margin was once capped at half the lease, and with a
        short lease a slow call outlived it: a message went twice (tests/test_workers_pg.py, database outage)."""
        if msg.lease_until is None:
            return None
        return msg.lease_until - timedelta(seconds=self._in_flight(msg.channel))

    def _send(self, job: _Job) -> _Outcome:
        transport = self.rt.transports[job.out.channel]
        warm = getattr(transport, "warm", None)
        if warm is not None:
            warm()  # a transport's per-thread setup happens before the slot, not between the slot and the wire
        self.pacer.wait(transport.sender, job.start_at)
        if job.send_by is not None and self.rt.clock.now() > job.send_by:
            return _Outcome(job, late=True)  # slow pacing or a stalled provider held it back: requeue, untried
        channel = job.out.channel
        started = time.perf_counter()
        try:
            sent = transport.send(job.out)
        except SendError as exc:
            metrics.MESSAGES_SENT.labels(channel, "retryable" if exc.retryable else "permanent").inc()
            return _Outcome(job, error=exc)
        except Exception as exc:  # a transport bug must not kill the pass; the lease makes it retry safely
            log.exception("message %s: transport %s raised unexpectedly", job.message_id, transport.name)
            return _Outcome(job, error=SendError(f"unexpected {type(exc).__name__}", ambiguous=True))
        metrics.SEND_SECONDS.labels(channel).observe(time.perf_counter() - started)
        metrics.MESSAGES_SENT.labels(channel, "sent").inc()
        return _Outcome(job, sent=sent)

    def record(self, outcomes: Sequence[_Outcome], report: PassReport) -> None:
        """Write every outcome in one transaction. A delivery callback may already have moved a message past
        `sent`: the update never moves a state backwards."""
        if not outcomes:
            return
        now = self.rt.clock.now()
        cfg = self.rt.settings.dispatch
        finished: list[int] = []
        checked_in: list[int] = []
        sent_rows: list[dict[str, object]] = []
        with self.rt.db.session() as s:
            for o in outcomes:
                if o.sent is not None:
                    sent_rows.append({"b_id": o.job.message_id, "b_provider_id": o.sent.provider_id, "b_now": now})
                    report.sent += 1
                    if o.job.kind == MessageKind.CLOSING and o.job.patient_id is not None:
                        finished.append(o.job.patient_id)
                    if o.job.kind == MessageKind.CHECKIN and o.job.patient_id is not None:
                        checked_in.append(o.job.patient_id)
                    continue
                msg = s.get(Message, o.job.message_id, with_for_update=True)
                if msg is None or msg.status != MessageState.SENDING or msg.lease_owner != self.owner:
                    continue  # settled by a delivery callback, or reconciled by another dispatcher
                if o.late:
                    _reschedule(msg, msg.due_at, "its lease ran short before the send could start; back in the queue")
                    msg.attempts, msg.updated_at = msg.attempts - 1, now
                    report.deferred += 1
                    continue
                err = o.error
                assert err is not None
                msg.updated_at, msg.error_code = now, err.code
                if err.retryable and err.ambiguous:
                    # Maybe sent: leave it `sending`; reconcile() asks the provider first, once the provider has had
                    # its settle time to show a message it accepted as the call timed out.
                    settle = timedelta(seconds=cfg.lookup_settle_seconds)
                    msg.lease_until, msg.reason = now + settle, f"outcome unknown ({err.reason}); reconciling"
                    report.retried += 1
                elif err.retryable and o.job.attempts < cfg.max_attempts:
                    _reschedule(
                        msg,
                        now + timedelta(seconds=self._backoff(o.job.attempts, err.retry_after)),
                        f"attempt {o.job.attempts} failed: {err.reason}",
                    )
                    report.retried += 1
                else:
                    why = "permanent" if not err.retryable else f"gave up after {o.job.attempts} attempts"
                    _finish(msg, MessageState.FAILED, f"{why}: {err.reason}")
                    report.failed += 1
                    if msg.patient_id is not None:
                        from followup.services.reachability import on_permanent_failure

                        on_permanent_failure(self.rt, s, msg, err, now)
            if sent_rows:  # one statement for the whole batch (executemany): per-row ORM updates cost more than sending
                s.connection().execute(_RECORD_SENT, sent_rows)
            if checked_in:
                silence.checkins_sent(s, checked_in)
            if finished:  # the closing message ends the program for patients who are simply active
                s.exec(
                    update(Patient)
                    .where(col(Patient.id).in_(finished), col(Patient.status) == PatientStatus.ACTIVE)
                    .values(status=PatientStatus.COMPLETED, updated_at=now)
                )
            s.commit()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cfg = self.rt.settings.dispatch
        ceiling = min(cfg.backoff_max_seconds, cfg.backoff_base_seconds * 2.0 ** (attempt - 1))
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)  # "equal jitter": spread, never near zero
        return max(delay, retry_after or 0.0)

    # ---- crash recovery -------------------------------------------------------------------------------------
    def reconcile(self, report: PassReport) -> None:
        """Messages whose lease ran out: never started ones go back to the queue; ones that may have been sent
        are looked up at the provider first."""
        now = self.rt.clock.now()
        lease = now + timedelta(seconds=self.rt.settings.dispatch.lease_seconds)
        # Take the stale rows over first, atomically and committed, as claim() does: another dispatcher recovering
        # at the same time must not also look them up, re-queue and send them a second time.
        params = {
            "b_now": now,
            "b_lease": lease,
            "b_owner": self.owner,
            "b_limit": self.rt.settings.dispatch.batch_size,
        }
        with self.rt.db.session() as s:
            ids = [row[0] for row in s.connection().execute(_take_stale_statement(), params)]
            s.commit()
        if not ids:
            return
        with self.rt.db.session() as s:
            stale = list(s.exec(_LOCK_OWNED, params={"b_ids": ids, "b_owner": self.owner}).all())
            # The provider lookups run side by side on the send pool: one at a time, recovering a crashed worker's
            # batch took a lookup's latency times the batch size (tests/test_workers_pg.py).
            sending = [msg for msg in stale if msg.status == MessageState.SENDING]
            found = dict(zip([msg.id for msg in sending], self.pool.map(self._find_sent, sending), strict=True))
            for msg in stale:
                msg.updated_at = now
                if msg.status == MessageState.CLAIMED:
                    _reschedule(msg, msg.due_at, "claimed by a worker that stopped; back in the queue")
                    report.reconciled += 1
                    continue
                self._reconcile_sending(msg, found[msg.id], now, report)
            s.flush()  # silence reads the sent_at just set
            silence.checkins_sent(
                s,
                [
                    x.patient_id
                    for x in stale
                    if x.sent_at is not None and x.patient_id is not None and x.kind == MessageKind.CHECKIN
                ],
            )
            s.commit()

    def _find_sent(self, msg: Message) -> str | Exception | None:
        """The provider's id for a message that may have been sent, None if it has none, or the lookup's error."""
        assert msg.id is not None
        out = Outgoing(
            message_id=msg.id, channel=msg.channel, to=msg.to or "", body=msg.body or "", subject=msg.subject
        )
        since = (msg.send_started_at or msg.updated_at) - timedelta(minutes=5)
        try:
            return self.rt.transports[msg.channel].find_sent(out, since)
        except (LookupUnavailable, SendError) as exc:
            return exc

    def _reconcile_sending(
        self, msg: Message, lookup: str | Exception | None, now: datetime, report: PassReport
    ) -> None:
        provider_id = lookup if isinstance(lookup, str) else None
        if isinstance(lookup, LookupUnavailable):
            grace = timedelta(seconds=self.rt.settings.dispatch.email_reconcile_grace_seconds)
            if msg.send_started_at and now - msg.send_started_at < grace:
                msg.lease_until = now + timedelta(seconds=30)  # wait for the provider's delivery events
                return
        elif isinstance(lookup, SendError):
            msg.lease_until = now + timedelta(seconds=30)
            msg.reason = f"reconciliation lookup failed: {lookup.reason}"
            return
        report.reconciled += 1
        if provider_id:
            msg.status, msg.provider_id, msg.sent_at = MessageState.SENT, provider_id, msg.sent_at or now
            msg.lease_owner = msg.lease_until = None
            msg.reason = "found at the provider after an interrupted send"
        elif msg.attempts >= self.rt.settings.dispatch.max_attempts:
            _finish(msg, MessageState.FAILED, f"not found at the provider after {msg.attempts} attempts")
        else:
            _reschedule(msg, now, "not found at the provider after an interrupted send; retrying")


def held(patient: Patient, msg: Message) -> tuple[str, str] | None:
    """Why a patient's message must not go now: ("cancel", why) or ("hold", why); None when it may go.

    Program messages follow the patient's status; answers to the patient (escalation advice, acknowledgements)
    do not. Every kind respects the channel's consent and waits for the contact to be confirmed, except consent
    messages themselves (the confirmation request, the answer to STOP, START or HELP).
    """
    if msg.kind == MessageKind.CONSENT:
        return None
    if msg.kind in (MessageKind.ESCALATION, MessageKind.SYSTEM):
        pass
    elif patient.status in FINISHED:
        return "cancel", f"patient {patient.status}"
    elif patient.status == PatientStatus.PAUSED:
        return "hold", "patient paused"
    elif patient.status == PatientStatus.ESCALATED and msg.kind == MessageKind.TIP:
        return "hold", "tips paused while an escalation is open"
    state = patient.sms_state if msg.channel == Channel.SMS else patient.email_state
    if state != "ok":
        return "cancel", f"{msg.channel} {state.replace('_', ' ')}"
    if not confirmed(patient, msg.channel):
        # Double opt-in: a contact from the public form gets its confirmation request and nothing else until its
        # owner answers; confirming it releases what waited (confirmation.confirm).
        return "hold", HOLD_UNCONFIRMED
    return None


def _finish(msg: Message, status: str, reason: str) -> None:
    msg.status, msg.reason = status, reason
    msg.lease_owner = msg.lease_until = None


def _reschedule(msg: Message, when: datetime, reason: str) -> None:
    msg.status, msg.due_at, msg.reason = MessageState.SCHEDULED, when, reason
    msg.lease_owner = msg.lease_until = None


def _latest_answers(s: Session, pids: set[int]) -> dict[int, dict[str, Any]]:
    if not pids:
        return {}
    rows = s.exec(_ANSWERS, params={"b_ids": list(pids)}).all()
    return {pid: dict(answers) for pid, answers in rows}


# ---- the pass's statements, built once ---------------------------------------------------------------------------
# A pass runs a fixed set of statements whatever its batch; building each from scratch every pass (coercing every
# clause, then computing its cache key) cost more than running it (bench/README.md, the simulator's fourth pass).
# They take bound parameters (b_*: a SET clause may not reuse a column's own name) and run through the connection.
_MESSAGE = SQLModel.metadata.tables["message"]
_LOCK_MESSAGES = select(Message).where(col(Message.id).in_(bindparam("b_ids", expanding=True))).with_for_update()
_LOCK_OWNED = (
    select(Message)
    .where(col(Message.id).in_(bindparam("b_ids", expanding=True)), col(Message.lease_owner) == bindparam("b_owner"))
    .with_for_update()
)
_PATIENTS = select(Patient).where(col(Patient.id).in_(bindparam("b_ids", expanding=True)))
_ANSWERS = (
    select(m.Triage.patient_id, m.Triage.answers)
    .where(col(m.Triage.patient_id).in_(bindparam("b_ids", expanding=True)))
    .order_by(col(m.Triage.id))
)


@cache
def _claim_statement(urgent_only: bool, by_channel: bool) -> Update:
    """Take up to :b_limit due messages (only urgent ones, or any; of :b_channels, or of every channel)."""
    t = _MESSAGE
    now = bindparam("b_now", type_=t.c.due_at.type)
    due_q = select(t.c.id).where(t.c.status == MessageState.SCHEDULED, t.c.due_at <= now)
    if urgent_only:
        due_q = due_q.where(t.c.urgent.is_(True))
    if by_channel:
        due_q = due_q.where(t.c.channel.in_(bindparam("b_channels", expanding=True)))
    due = (
        due_q.order_by(t.c.due_at)
        .limit(bindparam("b_limit", type_=Integer))
        .with_for_update(skip_locked=True)
        # Run once, before the update: as a plain subquery PostgreSQL may run it again for the rows the update
        # has already changed, skip those (changed by this statement) and take the next ones, so a claim took
        # every due message rather than `batch_limit` (tests/test_pacing.py).
        .cte("due")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        update(t)
        .where(t.c.id.in_(select(due.c.id)), t.c.status == MessageState.SCHEDULED)
        .values(
            status=MessageState.CLAIMED,
            lease_owner=bindparam("b_owner", type_=t.c.lease_owner.type),
            lease_until=bindparam("b_lease", type_=t.c.lease_until.type),
            updated_at=now,
        )
        .returning(t.c.id)
    )


@cache
def _take_stale_statement() -> Update:
    """Take over up to :b_limit messages whose lease ran out before :b_now (see `Dispatcher.reconcile`)."""
    t = _MESSAGE
    now = bindparam("b_now", type_=t.c.lease_until.type)
    is_stale = and_(
        or_(t.c.status == MessageState.CLAIMED, t.c.status == MessageState.SENDING),
        t.c.lease_until.is_not(None),
        t.c.lease_until < now,
    )
    stale_ids = (
        select(t.c.id).where(is_stale).limit(bindparam("b_limit", type_=Integer)).with_for_update(skip_locked=True)
    )
    return (
        update(t)
        .where(t.c.id.in_(stale_ids.scalar_subquery()), is_stale)
        .values(
            lease_owner=bindparam("b_owner", type_=t.c.lease_owner.type),
            lease_until=bindparam("b_lease", type_=t.c.lease_until.type),
        )
        .returning(t.c.id)
    )


@cache
def _write_decided(columns: tuple[str, ...]) -> Update:
    """Write these columns of the messages a pass decided, by :b_id (one statement per set of columns)."""
    return (
        update(_MESSAGE)
        .where(_MESSAGE.c.id == bindparam("b_id"))
        .values({k: bindparam(f"b_{k}", type_=_MESSAGE.c[k].type) for k in columns})
    )


_RECORD_SENT = (
    update(_MESSAGE)
    .where(_MESSAGE.c.id == bindparam("b_id"))
    .values(
        provider_id=bindparam("b_provider_id", type_=_MESSAGE.c.provider_id.type),
        error_code=None,  # an earlier attempt's 429 is history, not this message's state
        sent_at=bindparam("b_now", type_=_MESSAGE.c.sent_at.type),
        updated_at=bindparam("b_now", type_=_MESSAGE.c.updated_at.type),
        lease_owner=None,
        status=case((_MESSAGE.c.status == MessageState.SENDING, MessageState.SENT), else_=_MESSAGE.c.status),
    )
)
