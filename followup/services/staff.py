"""Staff accounts and their sign-in sessions: argon2 password hashes, lockout after repeated failures, and
server-side sessions (the cookie holds a random token; only its sha256 is stored, so logging out ends it)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from followup.core.storable import storable
from followup.models import StaffSession, StaffUser
from followup.runtime import Runtime
from followup.services import audit

ROLES = ("clinician", "admin")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte "password" is a denial of service
FAILURES_BEFORE_LOCK = 5
LOCK_FOR = timedelta(minutes=15)
SESSION_FOR = timedelta(hours=12)
TOUCH_EVERY = timedelta(minutes=5)  # last_seen_at is written at most this often

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not-a-password-" + secrets.token_hex(8))


class StaffError(ValueError):
    """Bad input for a staff account (the message names the field)."""


class LoginRefused(Exception):
    """Wrong email or password, or a locked account; the message is safe to show."""

    def __init__(self, message: str, locked_until: datetime | None = None) -> None:
        super().__init__(message)
        self.locked_until = locked_until


@dataclass(frozen=True)
class Staff:
    """The signed-in staff member as the web layer sees it (no hash)."""

    id: int
    email: str
    role: str
    session_id: int

    @property
    def actor(self) -> str:
        return f"staff:{self.id}"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise StaffError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise StaffError(f"password: at most {MAX_PASSWORD} characters")


def add_staff(rt: Runtime, email: str, role: str, password: str, actor: str = "cli") -> StaffUser:
    """Create a staff account; raises StaffError for a bad email, role, weak password or a taken email."""
    email = email.strip().lower()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        raise StaffError("email: not an email address")
    if role not in ROLES:
        raise StaffError(f"role: one of {', '.join(ROLES)}")
    check_password(password)
    now = rt.clock.now()
    user = StaffUser(email=email, role=role, password_hash=_hasher.hash(password), created_at=now, updated_at=now)
    with rt.db.session() as s:
        s.add(user)
        try:
            s.flush()
        except IntegrityError:
            raise StaffError("email: a staff account with this email exists") from None
        audit.record(s, now, actor, "staff.added", f"staff:{user.id}", role=role)
        s.commit()
    return user


def list_staff(rt: Runtime) -> list[StaffUser]:
    with rt.db.session() as s:
        return list(s.exec(select(StaffUser).order_by(StaffUser.email)).all())


def unlock(rt: Runtime, email: str, actor: str) -> bool:
    now = rt.clock.now()
    with rt.db.session() as s:
        user = s.exec(select(StaffUser).where(StaffUser.email == email.strip().lower())).first()
        if user is None:
            return False
        user.failed_logins, user.locked_until, user.updated_at = 0, None, now
        audit.record(s, now, actor, "staff.unlocked", f"staff:{user.id}")
        s.commit()
        return True


def authenticate(rt: Runtime, email: str, password: str) -> StaffUser:
    """The account if the password matches. After FAILURES_BEFORE_LOCK failures in a row the account is locked
    for LOCK_FOR, and each further failure starts the lock again; every attempt is in the audit log."""
    now = rt.clock.now()
    email = storable(email).strip().lower()[:320]  # a NUL from the public form must not reach PostgreSQL
    password = password[:MAX_PASSWORD]
    with rt.db.session() as s:
        user = s.exec(select(StaffUser).where(StaffUser.email == email)).first()
        if user is None or user.disabled_at is not None:
            _verify(_DUMMY_HASH, password)  # the same work as for a real account: no timing oracle
            audit.record(s, now, "anonymous", "staff.login_failed", "", reason="unknown account")
            s.commit()
            raise LoginRefused("Wrong email or password.")
        if user.locked_until is not None and user.locked_until > now:
            audit.record(s, now, f"staff:{user.id}", "staff.login_refused", f"staff:{user.id}", reason="locked")
            s.commit()
            raise LoginRefused("Too many failed attempts: this account is locked for a while.", user.locked_until)
        if not _verify(user.password_hash, password):
            user.failed_logins += 1
            user.updated_at = now
            locked = user.failed_logins >= FAILURES_BEFORE_LOCK
            if locked:
                user.locked_until = now + LOCK_FOR
            audit.record(
                s, now, f"staff:{user.id}", "staff.login_failed", f"staff:{user.id}", failures=user.failed_logins
            )
            s.commit()
            if locked:
                raise LoginRefused("Too many failed attempts: this account is locked for a while.", user.locked_until)
            raise LoginRefused("Wrong email or password.")
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
        user.failed_logins, user.locked_until, user.last_login_at, user.updated_at = 0, None, now, now
        s.commit()
        return user


def _verify(hashed: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(hashed, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(rt: Runtime, user: StaffUser) -> str:
    """A new session for a user who just signed in; returns the raw token for the cookie."""
    assert user.id is not None
    now = rt.clock.now()
    token = secrets.token_urlsafe(32)
    with rt.db.session() as s:
        s.add(
            StaffSession(
                token_hash=_digest(token),
                staff_id=user.id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + SESSION_FOR,
            )
        )
        audit.record(s, now, f"staff:{user.id}", "staff.login", f"staff:{user.id}")
        s.commit()
    return token


def session_staff(rt: Runtime, token: str | None) -> Staff | None:
    """Who holds this session token, or None (unknown, ended, expired, or the account was disabled)."""
    if not token or len(token) > 100:
        return None
    now = rt.clock.now()
    with rt.db.session() as s:
        row = s.exec(
            select(StaffSession, StaffUser)
            .join(StaffUser, col(StaffUser.id) == StaffSession.staff_id)
            .where(StaffSession.token_hash == _digest(token))
        ).first()
        if row is None:
            return None
        sess, user = row
        if sess.ended_at is not None or sess.expires_at <= now or user.disabled_at is not None:
            return None
        if now - sess.last_seen_at >= TOUCH_EVERY:
            sess.last_seen_at = now
            s.commit()
        assert user.id is not None and sess.id is not None
        return Staff(user.id, user.email, user.role, sess.id)


def end_session(rt: Runtime, token: str | None) -> None:
    if not token:
        return
    now = rt.clock.now()
    with rt.db.session() as s:
        sess = s.exec(select(StaffSession).where(StaffSession.token_hash == _digest(token))).first()
        if sess is None or sess.ended_at is not None:
            return
        sess.ended_at = now
        audit.record(s, now, f"staff:{sess.staff_id}", "staff.logout", f"staff:{sess.staff_id}")
        s.commit()
