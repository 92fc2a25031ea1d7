"""Tables. Every datetime is UTC-aware; JSON columns hold structured detail (answers, verdicts), never secrets.

Status, tier, kind, channel and level columns are plain strings; their values are the StrEnums of
`followup.core.vocab`, which compare equal to what is stored.

Ids are never reused (issue 11, finding 4): SQLite tables are AUTOINCREMENT (`NEVER_REUSED`), PostgreSQL ids come
from sequences. An erased escalation's id given to the next one would open the new one's booking to an old link.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from followup.core.vocab import NOT_FINISHED, AppointmentStatus, EscalationStatus, MessageState, PatientStatus

NEVER_REUSED = {"sqlite_autoincrement": True}  # SQLite: an id is never handed out again, even after a delete
PURGED_SQL = "'[removed after the retention period]'"  # services.privacy.PURGED, as partial indexes spell it
# Still followed up, but no channel works (services.roster.unreachable_clause): the predicate of
# ix_patient_unreachable, with literals (not bound parameters), so that a query spelled the same can be proven to
# imply it and reads only these patients, not every patient in follow-up.
_NOT_FINISHED_SQL = ", ".join(f"'{st}'" for st in NOT_FINISHED)
# The patients still followed up who have a silence (services/silence.py): the "Not responding" list reads them
# newest first through ix_patient_silent, so a page costs its rows, not every non-responder.
SILENT_SQL = f"silent_since IS NOT NULL AND status IN ({_NOT_FINISHED_SQL})"
UNREACHABLE_SQL = (
    f"status IN ({_NOT_FINISHED_SQL})"
    " AND (phone IS NULL OR sms_state <> 'ok') AND (email IS NULL OR email_state <> 'ok')"
)


def new_nonce() -> str:
    return secrets.token_hex(8)


def partial(table: str, name: str, columns: list[str], where: str) -> tuple[Index]:
    """A partial index (PostgreSQL and SQLite alike): only the rows a query still has to visit."""
    return (Index(f"ix_{table}_{name}", *columns, postgresql_where=text(where), sqlite_where=text(where)),)


class Patient(SQLModel, table=True):
    # On PostgreSQL the search also has trigram indexes on lower(name), email and phone (migration d1a5c0e2f3b4).
    __table_args__ = (
        Index("ix_patient_status", "status"),
        # the non-responders (services/silence.py): per status still followed up, a range of silent_since, so
        # finished patients' old silences are never read
        Index("ix_patient_status_silent_since", "status", "silent_since"),
        # the unreachable patients (the digest's list, the overview's count, the roster's filter): the answer only
        *partial("patient", "unreachable", ["id"], UNREACHABLE_SQL),
        *partial("patient", "silent", ["id", "silent_since"], SILENT_SQL),
        NEVER_REUSED,
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str
    phone: str | None = Field(default=None, unique=True, index=True)  # E.164
    email: str | None = Field(default=None, unique=True, index=True)  # lower-cased
    channel: str  # preferred: Channel (sms | email)
    timezone: str
    language: str = "en"
    status: str = PatientStatus.ACTIVE  # PatientStatus: active | paused | escalated | unenrolled | completed
    sms_state: str = "ok"  # ok | opted_out | invalid
    email_state: str = "ok"  # ok | opted_out | suppressed
    # When the contact was confirmed as the patient's: at once when the clinic entered it (API, dashboard), on
    # the owner's answer to the confirmation when given on the public form. Unconfirmed: only the confirmation
    # request goes to it (followup/services/confirmation.py).
    sms_confirmed_at: datetime | None = None
    email_confirmed_at: datetime | None = None
    reply_token: str = Field(unique=True, index=True)  # per-patient reply-to local part
    # The clinic's own id for the patient, given by a bulk import (services/bulk_import.py); unique, so a rerun
    # enrolls no one twice. None for patients enrolled by the API, the intake form or FHIR.
    external_id: str | None = Field(default=None, unique=True, index=True)
    onset_at: datetime | None = None  # when the twitching began, as recorded at triage
    enrolled_at: datetime | None = None
    # Kept by followup/services/silence.py: the latest reply, and when the second check-in after it went out.
    last_reply_at: datetime | None = None
    silent_since: datetime | None = None
    created_at: datetime
    updated_at: datetime


class Triage(SQLModel, table=True):
    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    source: str  # api | intake
    answers: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    red_flags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    disposition: str  # enrolled | escalated
    created_at: datetime


class Consent(SQLModel, table=True):
    """The consent ledger: every opt-in and opt-out per channel, with where it came from."""

    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    channel: str  # sms | email
    action: str  # opt_in | opt_out
    source: str  # intake | api | sms_keyword | provider_21610 | email_event | staff
    text: str = ""  # what the patient agreed to, verbatim
    at: datetime


class Message(SQLModel, table=True):
    """One outbound message: scheduled at enrollment, claimed by the dispatcher, sent once, tracked to delivery."""

    __table_args__ = (
        Index("ix_message_due", "status", "due_at"),
        Index("ix_message_status_channel", "status", "channel"),  # /metrics counts by state and channel
        UniqueConstraint("dedupe_key", name="uq_message_dedupe_key"),
        *partial("message", "unpurged", ["created_at"], f"body IS NULL OR body <> {PURGED_SQL}"),
        *partial("message", "clinic", ["template", "created_at"], "patient_id IS NULL AND escalation_id IS NULL"),
        *partial("message", "urgent_due", ["due_at"], "status = 'scheduled' AND urgent"),  # claimed first
        *partial("message", "checkin_sent", ["sent_at"], "kind = 'checkin'"),
        *partial("message", "failed", ["updated_at"], "status IN ('failed', 'undelivered')"),
        NEVER_REUSED,
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int | None = Field(default=None, foreign_key="patient.id", index=True)
    escalation_id: int | None = Field(default=None, foreign_key="escalation.id", index=True)
    dedupe_key: str  # e.g. "step:12:caffeine": one row per patient and step, whatever retries happen
    channel: str  # sms | email
    to: str | None = None  # set for clinic alerts; patients' messages go to the patient's current address
    kind: (
        str  # MessageKind: welcome | tip | checkin | closing | escalation | system | consent | alert | notice | digest
    )
    step_id: str | None = None
    template: str
    question_id: str | None = None
    context: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    urgent: bool = False  # ignores quiet hours (emergencies, clinic alerts)
    status: str = MessageState.SCHEDULED  # MessageState
    due_at: datetime
    expires_at: datetime
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None
    send_started_at: datetime | None = None
    provider_id: str | None = Field(default=None, index=True)
    error_code: str | None = None
    reason: str | None = None
    subject: str | None = None
    body: str | None = None
    segments: int | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class DeliveryEvent(SQLModel, table=True):
    """A provider callback, stored once (the unique key makes a retried webhook a no-op) by the webhook, and applied
    to its message later, in batches, by a worker (services/delivery.apply_pending); `outcome` NULL: not yet."""

    __table_args__ = (*partial("deliveryevent", "pending", ["tries", "id"], "outcome IS NULL"), NEVER_REUSED)

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(unique=True)  # sendgrid sg_event_id, or twilio "<sid>:<status>"
    message_id: int | None = Field(default=None, foreign_key="message.id", index=True)  # set once applied
    provider: str
    status: str
    error_code: str | None = None
    at: datetime
    ref: int | None = None  # our message id as the provider echoed it (not trusted until applied)
    sid: str | None = None  # the provider's message id
    outcome: str | None = None  # applied | kept (no regression) | ignored status | unknown message | ...; NULL: pending
    tries: int = 0  # passes that could not find the message yet (a callback can beat the commit of the send)


class Inbound(SQLModel, table=True):
    """A reply (SMS or email) as received; kept even when nothing can be done with it."""

    __table_args__ = (
        Index("ix_inbound_received_at", "received_at"),
        *partial("inbound", "pending", ["received_at"], "status = 'received'"),
        *partial("inbound", "unpurged", ["received_at"], f"body <> {PURGED_SQL}"),
        *partial("inbound", "unmatched_sender", ["sender"], "patient_id IS NULL"),
        NEVER_REUSED,
    )

    id: int | None = Field(default=None, primary_key=True)
    provider_key: str = Field(unique=True)  # "twilio:<MessageSid>" or "email:<Message-ID>"
    channel: str
    patient_id: int | None = Field(default=None, foreign_key="patient.id", index=True)
    sender: str
    body: str
    subject: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # received | processing | processed | ignored | flood (over the budget: stored unread); indexed for /metrics
    status: str = Field(default="received", index=True)
    intent: str | None = None  # reply | opt_out | opt_in | help | unknown_sender
    level: str | None = None  # Level: emergency | red_flag | none
    verdict: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    reason: str | None = None
    received_at: datetime
    processed_at: datetime | None = None
    claim_until: datetime | None = None  # a reply worker is acting on it until then (services/inbound.claim)


class Escalation(SQLModel, table=True):
    __table_args__ = (
        Index("ix_escalation_status_created", "status", "created_at"),
        Index("ix_escalation_created_at", "created_at"),
        NEVER_REUSED,
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    level: str  # Level: emergency | red_flag
    tier: str  # Tier: emergency | urgent | routine
    status: str = Field(default=EscalationStatus.OPEN, index=True)  # EscalationStatus: open | acknowledged | ...
    source: str  # triage | reply
    criteria: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    evidence: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    triage_id: int | None = Field(default=None, foreign_key="triage.id")
    inbound_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    booked_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    note: str | None = None
    # Random, this escalation's alone: a booking token binds it, so no link outlives the escalation it was for.
    nonce: str = Field(default_factory=new_nonce)
    created_at: datetime
    updated_at: datetime


class ApiToken(SQLModel, table=True):
    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    name: str
    token_hash: str = Field(unique=True)  # sha256 hex; the token itself is shown once
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class AuditLog(SQLModel, table=True):
    __table_args__ = (
        Index("ix_auditlog_subject", "subject"),
        Index("ix_auditlog_actor_id", "actor", "id"),
        NEVER_REUSED,
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    actor: str  # "token:3", "system", "patient:12", "provider:twilio"
    action: str
    subject: str = ""  # "patient:12", "message:40", "inbound:7"
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


# ---- the clinic's side: staff accounts, appointments, re-alerts ----------------------------------------------


class OverviewDay(SQLModel, table=True):
    """The overview's rollup: one figure of one clinic-local day (escalations by tier, check-ins asked and answered,
    failures, trends), written by the `overview` job (services/rollup.py), so a page view reads weeks of these
    instead of every message. The figure names are in core/figures.py (ESCALATION, ASKED, ...)."""

    day: date = Field(primary_key=True)
    figure: str = Field(primary_key=True)
    n: int


class StaffUser(SQLModel, table=True):
    """A clinic staff member who signs in to the dashboard; the password is kept only as an argon2 hash."""

    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, index=True)  # lower-cased
    role: str  # clinician | admin
    password_hash: str
    last_login_at: datetime | None = None
    disabled_at: datetime | None = None  # set by `staff disable` or an admin; a disabled account cannot sign in
    # The TOTP second factor (RFC 6238): the base32 secret, set when enrolment starts and kept only once a code
    # confirmed it (totp_enabled_at); the last time step accepted, so a code cannot be used twice.
    totp_secret: str | None = None
    totp_enabled_at: datetime | None = None
    totp_last_step: int | None = None
    created_at: datetime
    updated_at: datetime


class Throttle(SQLModel, table=True):
    """Recent failures for one key (a client address, an account, a device, a webhook caller), for the back-off
    in followup/core/throttle.py. The key is a keyed hash: no address or email is stored. Shared by every process
    on the database, kept across restarts; rows are deleted once their count has decayed to nothing."""

    key: str = Field(primary_key=True)
    count: float
    last_at: datetime = Field(index=True)


class SenderPace(SQLModel, table=True):
    """One sender's pacing bucket (followup/core/pacing.py), shared by every dispatcher on the database: `tat` is
    the schedule time of its next send (seconds since the epoch), `granted` how many the last grant took. The key
    is the sender: the clinic's own number, address or Twilio Messaging Service, never a patient's."""

    sender: str = Field(primary_key=True)
    tat: float
    granted: int = 0


class LimitBucket(SQLModel, table=True):
    """One sender's flood-limit bucket (followup/core/limits.py), shared by every web process on the database: full
    again at `tat` (seconds since the epoch), `refused` requests refused since its last token, `ended` how many the
    last allowed request ended a flood after. The key is "<limit>:<keyed hash>" of the number or client address:
    neither is stored. Rows full for long are deleted on the way (followup/services/limits.py)."""

    key: str = Field(primary_key=True)
    tat: float = Field(index=True)
    refused: int = 0
    ended: int = 0


class StaffSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random token; only its sha256 is stored, so logout is real."""

    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True)
    staff_id: int = Field(foreign_key="staffuser.id", index=True)
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None


BOOKED_ONLY = text("status = 'booked'")  # AppointmentStatus.BOOKED, as the migration writes it


class Appointment(SQLModel, table=True):
    """A booked visit. Two partial unique indexes (PostgreSQL and SQLite alike) make double booking impossible:
    one active booking per slot, and one per escalation; cancelled rows stay for the record."""

    __table_args__ = (
        Index(
            "uq_appointment_slot_booked",
            "starts_at",
            unique=True,
            postgresql_where=BOOKED_ONLY,
            sqlite_where=BOOKED_ONLY,
        ),
        Index(
            "uq_appointment_escalation_booked",
            "escalation_id",
            unique=True,
            postgresql_where=BOOKED_ONLY,
            sqlite_where=BOOKED_ONLY,
        ),
        NEVER_REUSED,
    )

    id: int | None = Field(default=None, primary_key=True)
    escalation_id: int = Field(foreign_key="escalation.id", index=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    starts_at: datetime
    ends_at: datetime
    status: str = AppointmentStatus.BOOKED  # AppointmentStatus: booked | cancelled
    booked_by: str  # "patient:12" (from the link) or "staff:3"
    created_at: datetime
    updated_at: datetime
    cancelled_at: datetime | None = None


class EscalationAlert(SQLModel, table=True):
    """One re-alert round of an unacknowledged escalation; the unique round makes a second worker a no-op."""

    __table_args__ = (UniqueConstraint("escalation_id", "round", name="uq_escalationalert_round"), NEVER_REUSED)

    id: int | None = Field(default=None, primary_key=True)
    escalation_id: int = Field(foreign_key="escalation.id", index=True)
    round: int  # 1 for the first re-alert (the alert at opening is round 0, sent by the escalation itself)
    tier_index: int  # 0: clinic.oncall_*; n: alerts.escalation_tiers[n-1]
    tier: str  # the escalation's tier at the time (emergency | urgent)
    recipients: int
    at: datetime


class FhirLink(SQLModel, table=True):
    """A Patient identifier from a clinic's FHIR system, the patient it enrolled and the triage its last
    transaction recorded. The unique identifier makes a replayed transaction a no-op; `digest` (SHA-256 of the
    normalised submission) tells a replay from a re-triage."""

    __table_args__ = (UniqueConstraint("system", "value", name="uq_fhirlink_identifier"), NEVER_REUSED)

    id: int | None = Field(default=None, primary_key=True)
    system: str
    value: str
    patient_id: int = Field(foreign_key="patient.id", index=True)
    triage_id: int = Field(foreign_key="triage.id")
    digest: str
    created_at: datetime
    updated_at: datetime


class ContactConfirmation(SQLModel, table=True):
    """One request to confirm a contact given on the public form: "reply YES" by SMS, a link by email. The
    address is kept only as a keyed hash (`address_ref`), which also counts requests per number for the limit."""

    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int | None = Field(default=None, foreign_key="patient.id", index=True)
    channel: str  # sms | email
    address_ref: str = Field(index=True)  # keyed hash of the number or address
    token_hash: str | None = Field(default=None, unique=True)  # sha256 of the email link's token
    status: str = "pending"  # pending | confirmed | expired | limited
    requested_at: datetime
    expires_at: datetime
    confirmed_at: datetime | None = None


# ---- integration and operations: outbound webhooks, phone calls, worker heartbeats ----------------------------


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint: the transactional outbox of signed outbound webhooks. Written in the same
    transaction as the change it announces, delivered at least once by the `webhooks` job with back-off; the
    event id (the `webhook-id` header) is the same on every retry, so a receiver can drop repeats."""

    __table_args__ = (
        UniqueConstraint("event_id", "endpoint", name="uq_webhookdelivery_event_endpoint"),
        Index("ix_webhookdelivery_due", "status", "next_attempt_at"),
        NEVER_REUSED,
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str  # "evt_<32 hex>"
    event_type: str  # escalation.opened | ... (settings.WEBHOOK_EVENTS)
    endpoint: str  # the endpoint's name in settings
    patient_id: int | None = Field(default=None, index=True)  # no foreign key: an erasure deletes these rows
    body: str  # the exact JSON signed and sent; health details only for a trusted endpoint
    status: str = "pending"  # pending | sending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime
    lease_until: datetime | None = None
    last_status: int | None = None  # the receiver's HTTP status
    last_error: str | None = None
    last_latency_ms: int | None = None
    delivered_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class VoiceCall(SQLModel, table=True):
    """A phone call to an on-call number for an emergency nobody acknowledged (followup/services/voice.py)."""

    __table_args__ = (UniqueConstraint("escalation_id", "round", "to", name="uq_voicecall_round_to"), NEVER_REUSED)

    id: int | None = Field(default=None, primary_key=True)
    escalation_id: int = Field(foreign_key="escalation.id", index=True)
    round: int  # the re-alert round that placed it
    tier_index: int  # whose phone: 0 clinic.oncall_sms, n alerts.escalation_tiers[n-1]
    to: str
    status: str = "queued"  # queued | calling | placed | acknowledged | declined | no_answer | failed
    provider_id: str | None = Field(default=None, index=True)  # Twilio CallSid
    digits: str | None = None
    reason: str | None = None
    placed_at: datetime | None = None
    ended_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class WorkerHeartbeat(SQLModel, table=True):
    """A process running the scheduler: written after every dispatcher pass, read by /readyz and the dashboard."""

    worker: str = Field(primary_key=True)  # "<host>:<pid>:<random>"
    host: str
    pid: int
    started_at: datetime
    last_pass_at: datetime = Field(index=True)
    passes: int = 0
    last_claimed: int = 0
    last_sent: int = 0
