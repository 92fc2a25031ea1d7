"""The optional second factor for staff: setting it up, turning it off, and resetting it for someone who lost it.

Setting up is two steps: `begin` makes a secret and returns it with its otpauth:// URI (shown once, on the page
that asked); `confirm` turns it on once a code made from it matches, so a mistyped secret locks no one out. In
production an admin must have one (`required`). A user may turn theirs off with a current code, except an admin
in production; an admin (another one) or the CLI can reset anyone's: all audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from followup.core import totp
from followup.core.vocab import StaffRole
from followup.models import StaffUser
from followup.runtime import Runtime
from followup.services import audit, throttle
from followup.services.signin import TooManyAttempts, WrongCode
from followup.services.staff import Staff, StaffError, lookup
from followup.settings import Settings


@dataclass(frozen=True)
class Enrolment:
    secret: str  # base32, for typing into an app by hand
    uri: str  # otpauth://totp/..., for pasting


def required(settings: Settings, role: str) -> bool:
    """Whether an account of this role must have a second factor before doing anything else."""
    return settings.security.environment == "production" and role == StaffRole.ADMIN


def begin(rt: Runtime, staff: Staff) -> Enrolment:
    """A new secret for the signed-in user, kept pending until `confirm`. Raises StaffError if one is on."""
    now = rt.clock.now()
    secret = totp.new_secret()
    with rt.db.session() as s:
        user = lookup(s, staff.id)
        if user.totp_enabled_at is not None:
            raise StaffError("second factor: already set up; turn it off first to set up another")
        user.totp_secret, user.totp_last_step, user.updated_at = secret, None, now
        s.commit()
    return Enrolment(secret, totp.uri(secret, staff.email, rt.settings.clinic.name))


def confirm(rt: Runtime, staff: Staff, code: str, address: str) -> None:
    """Turn the pending secret on if `code` was made from it. Raises WrongCode or TooManyAttempts (codes are
    counted like at sign-in), or StaffError when no set-up was begun."""
    keys = [throttle.key(rt, "address", address), throttle.key(rt, "code", str(staff.id))]
    wait = throttle.retry_after(rt, keys)
    if wait > timedelta(0):
        raise TooManyAttempts(wait)
    now = rt.clock.now()
    with rt.db.session() as s:
        user = lookup(s, staff.id)
        if user.totp_enabled_at is not None or not user.totp_secret:
            raise StaffError("second factor: start the set-up again")
        step = totp.matching_step(user.totp_secret, code[:40], now)
        if step is not None:
            user.totp_enabled_at, user.totp_last_step, user.updated_at = now, step, now
            audit.record(s, now, staff.actor, "staff.totp_enrolled", staff.actor)
            s.commit()
    if step is None:
        throttle.failed(rt, keys)
        raise WrongCode()
    throttle.clear(rt, [keys[1]])


def remove_own(rt: Runtime, staff: Staff, code: str, address: str) -> None:
    """Turn off one's own second factor with a current code. An admin in production may not (it is required)."""
    if required(rt.settings, staff.role):
        raise StaffError("second factor: required for admins in production; another admin can reset it")
    keys = [throttle.key(rt, "address", address), throttle.key(rt, "code", str(staff.id))]
    wait = throttle.retry_after(rt, keys)
    if wait > timedelta(0):
        raise TooManyAttempts(wait)
    now = rt.clock.now()
    with rt.db.session() as s:
        user = lookup(s, staff.id)
        step = None
        if user.totp_secret and user.totp_enabled_at:
            step = totp.matching_step(user.totp_secret, code[:40], now, user.totp_last_step)
        if step is not None:
            _clear(user, now)
            audit.record(s, now, staff.actor, "staff.totp_removed", staff.actor)
            s.commit()
    if step is None:
        throttle.failed(rt, keys)
        raise WrongCode()


def reset(rt: Runtime, who: int | str, actor: str) -> StaffUser:
    """Remove someone's second factor (they lost their phone): they sign in with the password alone and, if it
    is required, set up a new one first. Their failure counts for codes are cleared."""
    now = rt.clock.now()
    with rt.db.session() as s:
        user = lookup(s, who)
        if actor == f"staff:{user.id}":
            raise StaffError("second factor: another admin, or `followup staff totp-reset`, must reset your own")
        _clear(user, now)
        audit.record(s, now, actor, "staff.totp_reset", f"staff:{user.id}")
        s.commit()
    throttle.clear(rt, [throttle.key(rt, "code", str(user.id))])
    return user


def _clear(user: StaffUser, now: datetime) -> None:
    user.totp_secret = user.totp_enabled_at = user.totp_last_step = None
    user.updated_at = now
