"""Signing in to the dashboard: the password, then the second-factor code when the account has one.

Nothing here locks an account. Failures are counted per client address and per account (see POLICIES in
services/throttle.py): a few are free, then waits double up to a cap, and a browser that signed in to the account
before counts apart from everyone else (its device id), so an attacker's failures never keep the owner out of
their own browser. Unknown, disabled and real accounts are answered alike: the same message, the same counts and
one argon2 check each (`passwords.verify` against a dummy hash), so no answer tells whether an email is staff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, update
from sqlmodel import col, select

from followup.core.storable import storable
from followup.core.totp import matching_step
from followup.models import StaffUser
from followup.runtime import Runtime
from followup.services import audit, passwords, throttle
from followup.services.passwords import Busy

__all__ = ["Attempt", "Busy", "TooManyAttempts", "WrongCode", "WrongCredentials", "check_code", "check_password"]


class WrongCredentials(Exception):
    """The email and password do not open an account (unknown, disabled or wrong: never said which)."""


class WrongCode(Exception):
    """The second-factor code is wrong, used already, or too old."""


class TooManyAttempts(Exception):
    """Too many recent failures from this address or for this account: nothing was checked."""

    def __init__(self, retry_after: timedelta) -> None:
        super().__init__(f"retry after {retry_after}")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Attempt:
    email: str
    password: str
    address: str  # the client's address as the web layer keys it (an IPv6 client by its /64)
    device: str | None = None  # the device id this browser got when it last signed in to this email


def normal_email(email: str) -> str:
    """The form an email is looked up (and counted) in."""
    return storable(email).strip().lower()[:320]  # a NUL from the public form must not reach PostgreSQL


def check_password(rt: Runtime, attempt: Attempt) -> StaffUser:
    """The account if the password opens it. Raises TooManyAttempts (nothing checked), Busy (no slot free for
    the hash: nothing checked or counted), or WrongCredentials (counted, audited)."""
    email = normal_email(attempt.email)
    keys = [throttle.key(rt, "address", attempt.address)]
    keys.append(throttle.key(rt, "device", attempt.device) if attempt.device else throttle.key(rt, "account", email))
    wait = throttle.retry_after(rt, keys)
    if wait > timedelta(0):
        raise TooManyAttempts(wait)
    with rt.db.session() as s:
        user = s.exec(select(StaffUser).where(StaffUser.email == email)).first()
    usable = user is not None and user.disabled_at is None
    ok, rehashed = passwords.verify(rt, user.password_hash if user and usable else None, attempt.password)
    if not ok:
        wait = throttle.failed(rt, keys)
        reason = "unknown account" if user is None else "disabled" if not usable else "wrong password"
        who = f"staff:{user.id}" if user is not None else ""
        audit.note(rt, who or "anonymous", "staff.login_failed", who, reason=reason, wait_seconds=_seconds(wait))
        raise WrongCredentials()
    assert user is not None
    throttle.clear(rt, [k for k in keys if k.kind != "address"])
    if rehashed:
        with rt.db.session() as s:
            s.exec(update(StaffUser).where(col(StaffUser.id) == user.id).values(password_hash=rehashed))
            s.commit()
    return user


def check_code(rt: Runtime, staff_id: int, code: str, address: str) -> StaffUser:
    """The account if `code` is its current second-factor code, used once. Raises TooManyAttempts or WrongCode
    (counted per account and address, audited)."""
    keys = [throttle.key(rt, "address", address), throttle.key(rt, "code", str(staff_id))]
    wait = throttle.retry_after(rt, keys)
    if wait > timedelta(0):
        raise TooManyAttempts(wait)
    now = rt.clock.now()
    with rt.db.session() as s:
        user = s.get(StaffUser, staff_id)
        step = None
        if user is not None and user.disabled_at is None and user.totp_secret and user.totp_enabled_at:
            step = matching_step(user.totp_secret, code[:40], now, user.totp_last_step)
        if step is not None:
            # Compare-and-set: of two sign-ins racing with one code, only one gets in.
            done = s.exec(
                update(StaffUser)
                .where(
                    col(StaffUser.id) == staff_id,
                    or_(col(StaffUser.totp_last_step).is_(None), col(StaffUser.totp_last_step) < step),
                )
                .values(totp_last_step=step)
            )
            s.commit()
            if done.rowcount != 1:
                step = None
    if step is None or user is None:
        wait = throttle.failed(rt, keys)
        audit.note(rt, f"staff:{staff_id}", "staff.code_failed", f"staff:{staff_id}", wait_seconds=_seconds(wait))
        raise WrongCode()
    throttle.clear(rt, [keys[1]])
    return user


def _seconds(wait: timedelta) -> int:
    return int(wait.total_seconds())
