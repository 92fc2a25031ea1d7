"""The service's vocabulary: every status, tier, kind, channel and level it stores, and the sets of them that
recur, each written once.

The members are StrEnums and the database columns stay plain strings (no migration, no SQL enum type): a member
equals the string it stands for (`Tier.URGENT == "urgent"`), hashes like it, and is written and rendered as it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Channel(StrEnum):
    """How a message reaches a patient or the clinic."""

    SMS = "sms"
    EMAIL = "email"


CHANNELS: tuple[Channel, ...] = tuple(Channel)


class PatientStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # by staff: program messages wait
    ESCALATED = "escalated"  # an escalation is open: tips wait
    UNENROLLED = "unenrolled"
    COMPLETED = "completed"  # the closing message went out


# Followed up and not paused: what an escalation may mark `escalated`, and what staff may pause.
FOLLOWED_UP: tuple[PatientStatus, ...] = (PatientStatus.ACTIVE, PatientStatus.ESCALATED)
# No longer followed up: program messages are cancelled, and silence is not counted against them.
FINISHED: tuple[PatientStatus, ...] = (PatientStatus.UNENROLLED, PatientStatus.COMPLETED)
# Still followed up (paused too): the complement of FINISHED, spelled as a list so that an index on status serves it.
NOT_FINISHED: tuple[PatientStatus, ...] = tuple(s for s in PatientStatus if s not in FINISHED)


class Tier(StrEnum):
    """How soon the clinic must act. The members are listed most serious first: that is the one ordering."""

    EMERGENCY = "emergency"
    URGENT = "urgent"
    ROUTINE = "routine"


TIERS: tuple[Tier, ...] = tuple(Tier)  # most serious first
# Acted on within hours: re-alerted while unacknowledged, and offered the reserve of early slots.
ABOVE_ROUTINE: tuple[Tier, ...] = (Tier.EMERGENCY, Tier.URGENT)
_RANK: dict[str, int] = {tier: rank for rank, tier in enumerate(TIERS)}


def tier_rank(tier: str) -> int:
    """0 for the most serious tier, then 1, 2: sort by it for most serious first. An unknown tier is an error."""
    try:
        return _RANK[tier]
    except KeyError:
        raise ValueError(f"unknown tier {tier!r}") from None


def queue_rank(tier: str) -> int:
    """`tier_rank` for rows read back from the database: a tier this code does not know sorts last."""
    return _RANK.get(tier, len(TIERS))


def more_serious(tier: str, than: str) -> bool:
    return tier_rank(tier) < tier_rank(than)


def most_serious(tiers: Iterable[str]) -> Tier:
    """The most serious of `tiers` (at least one)."""
    return Tier(min(tiers, key=tier_rank))


class Level(StrEnum):
    """What a reply or a triage amounts to: an emergency, another red flag, or nothing to escalate."""

    EMERGENCY = "emergency"
    RED_FLAG = "red_flag"
    NONE = "none"


def level_of(tier: str | None) -> Level:
    """An emergency tier is an emergency; any other tier a red flag; no tier, nothing."""
    if tier is None:
        return Level.NONE
    return Level.EMERGENCY if tier == Tier.EMERGENCY else Level.RED_FLAG


class EscalationStatus(StrEnum):
    OPEN = "open"  # nobody has taken it yet: the re-alert clock runs
    ACKNOWLEDGED = "acknowledged"
    BOOKED = "booked"
    CLOSED = "closed"


# Still the clinic's to act on: one per patient at most, counted in the digest and the overview.
ACTIVE_ESCALATION: tuple[EscalationStatus, ...] = (EscalationStatus.OPEN, EscalationStatus.ACKNOWLEDGED)
# Not closed: the patient's booking link still works, and staff may still close it.
NOT_CLOSED: tuple[EscalationStatus, ...] = (*ACTIVE_ESCALATION, EscalationStatus.BOOKED)


class AppointmentStatus(StrEnum):
    BOOKED = "booked"  # at most one per slot and one per escalation (partial unique indexes)
    CANCELLED = "cancelled"  # kept for the record


class StaffRole(StrEnum):
    """What a staff account may do: admins also see the audit log, manage accounts, and in production must use a
    second factor."""

    CLINICIAN = "clinician"
    ADMIN = "admin"


class MessageKind(StrEnum):
    """Why a message is sent, which decides its time-to-live and whether a patient's status holds it."""

    # the program's steps (clinic/program.toml)
    WELCOME = "welcome"
    TIP = "tip"
    CHECKIN = "checkin"
    CLOSING = "closing"
    # answers to the patient
    ESCALATION = "escalation"  # what to do now, after a red flag
    SYSTEM = "system"  # reply acknowledgements, booking confirmations
    CONSENT = "consent"  # confirmation of an opt-out, opt-in or HELP
    # to the clinic
    ALERT = "alert"  # a new or upgraded escalation, a re-alert, an unreachable patient
    NOTICE = "notice"  # a visit booked, moved or cancelled
    DIGEST = "digest"  # the daily email


PROGRAM_KINDS: tuple[MessageKind, ...] = (
    MessageKind.WELCOME,
    MessageKind.TIP,
    MessageKind.CHECKIN,
    MessageKind.CLOSING,
)


class MessageState(StrEnum):
    """Where an outbound message is. A terminal state is never left (delivery callbacks arrive out of order)."""

    SCHEDULED = "scheduled"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# Not yet out of our hands.
OPEN_STATES: tuple[MessageState, ...] = (MessageState.SCHEDULED, MessageState.CLAIMED, MessageState.SENDING)
TERMINAL_STATES: tuple[MessageState, ...] = (
    MessageState.DELIVERED,
    MessageState.UNDELIVERED,
    MessageState.FAILED,
    MessageState.EXPIRED,
    MessageState.CANCELLED,
)
# Went out to the patient (a check-in in one of these was asked).
WENT_OUT: tuple[MessageState, ...] = (MessageState.SENT, MessageState.DELIVERED)
# Did not reach the patient: what the overview counts as a delivery failure.
NOT_DELIVERED: tuple[MessageState, ...] = (MessageState.FAILED, MessageState.UNDELIVERED)


class Trend(StrEnum):
    """How a patient says the twitching is going, read from a check-in answer."""

    BETTER = "better"
    SAME = "same"
    WORSE = "worse"
