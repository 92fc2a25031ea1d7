"""Staff accounts and their sessions: adding, disabling and enabling an account, setting or changing a password,
ending sessions; every change audited. Sessions are server-side (the cookie holds a random token; only its sha256
is stored, so logging out, disabling or revoking ends it at once).

Who may do what is decided by the callers: the CLI (an operator on the server) and the admin pages may act on any
account; every user may change their own password. Signing in is in services/signin.py.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from followup.core.vocab import StaffRole
from followup.models import StaffSession, StaffUser
from followup.runtime import Runtime
from followup.services import audit, passwords, throttle
from followup.services.passwords import PasswordError
from followup.services.signin import TooManyAttempts, WrongCredentials

ROLES: tuple[StaffRole, ...] = tuple(StaffRole)
SESSION_FOR = timedelta(hours=12)
TOUCH_EVERY = timedelta(minutes=5)  # last_seen_at is written at most this often


class StaffError(ValueError):
    """Bad input for a staff account, or a change that is not allowed (the message names the field)."""


class NoSuchStaff(StaffError):
    """No staff account has this email or id."""


@dataclass(frozen=True)
class Staff:
    """The signed-in staff member as the web layer sees it (no hash, no secret)."""

    id: int
    email: str
    role: str
    session_id: int
    totp: bool = False  # a second factor is set up

    @property
    def actor(self) -> str:
        return f"staff:{self.id}"

    @property
    def is_admin(self) -> bool:
        return self.role == StaffRole.ADMIN


def _password(password: str, field: str = "password") -> None:
    try:
        passwords.check_password(password, field)
    except PasswordError as exc:
        raise StaffError(str(exc)) from None


def add_staff(rt: Runtime, email: str, role: str, password: str, actor: str = "cli") -> StaffUser:
    """Create a staff account; raises StaffError for a bad email, role, weak password or a taken email."""
    email = email.strip().lower()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        raise StaffError("email: not an email address")
    if role not in ROLES:
        raise StaffError(f"role: one of {', '.join(ROLES)}")
    _password(password)
    now = rt.clock.now()
    user = StaffUser(
        email=email, role=role, password_hash=passwords.hash_password(rt, password), created_at=now, updated_at=now
    )
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


def lookup(s: Session, who: int | str) -> StaffUser:
    """The account with this id, or this email (any case), in the caller's session; raises NoSuchStaff."""
    if isinstance(who, int):
        user = s.get(StaffUser, who)
    else:
        user = s.exec(select(StaffUser).where(StaffUser.email == who.strip().lower())).first()
    if user is None:
        raise NoSuchStaff(f"no staff account {who}")
    return user


def _end_sessions(s: Session, staff_id: int, now: datetime, keep: int | None = None) -> int:
    """End every open session of the account (but `keep`); returns how many."""
    where = [col(StaffSession.staff_id) == staff_id, col(StaffSession.ended_at).is_(None)]
    if keep is not None:
        where.append(col(StaffSession.id) != keep)
    ended = s.exec(update(StaffSession).where(*where).values(ended_at=now))
    return int(ended.rowcount or 0)


def disable(rt: Runtime, who: int | str, actor: str) -> StaffUser:
    """Disable an account: it can no longer sign in, and its sessions end now. The last active admin cannot be
    disabled (someone must be able to enable accounts from the dashboard)."""
    now = rt.clock.now()
    with rt.db.session() as s:
        user = lookup(s, who)
        if user.disabled_at is not None:
            return user
        if actor == f"staff:{user.id}":
            raise StaffError("account: you cannot disable your own account; ask another admin")
        if user.role == StaffRole.ADMIN and _active_admins(s) <= 1:
            raise StaffError("account: the last active admin cannot be disabled; add or enable another admin first")
        user.disabled_at, user.updated_at = now, now
        ended = _end_sessions(s, user.id or 0, now)
        audit.record(s, now, actor, "staff.disabled", f"staff:{user.id}", sessions_ended=ended)
        s.commit()
        return user


def enable(rt: Runtime, who: int | str, actor: str) -> StaffUser:
    now = rt.clock.now()
    with rt.db.session() as s:
        user = lookup(s, who)
        if user.disabled_at is None:
            return user
        user.disabled_at, user.updated_at = None, now
        audit.record(s, now, actor, "staff.enabled", f"staff:{user.id}")
        s.commit()
        return user


def _active_admins(s: Session) -> int:
    rows = s.exec(select(StaffUser.id).where(StaffUser.role == StaffRole.ADMIN, col(StaffUser.disabled_at).is_(None)))
    return len(rows.all())


def set_password(rt: Runtime, who: int | str, new: str, actor: str) -> StaffUser:
    """Set an account's password (the CLI, or an admin for someone who forgot theirs). Every session of the
    account ends, and its failure counts are cleared."""
    _password(new)
    hashed = passwords.hash_password(rt, new)
    now = rt.clock.now()
    with rt.db.session() as s:
        user = lookup(s, who)
        user.password_hash, user.updated_at = hashed, now
        ended = _end_sessions(s, user.id or 0, now)
        audit.record(s, now, actor, "staff.password_set", f"staff:{user.id}", sessions_ended=ended)
        s.commit()
    throttle.clear(rt, [throttle.key(rt, "account", user.email)])
    return user


def change_own_password(rt: Runtime, staff: Staff, current: str, new: str, address: str) -> None:
    """A signed-in user changes their password: the current one is checked (counted against the account and
    the address like a sign-in, so a borrowed session cannot guess it), and their other sessions end. Raises
    StaffError, WrongCredentials, TooManyAttempts or Busy."""
    _password(new, "new_password")
    keys = [throttle.key(rt, "address", address), throttle.key(rt, "account", staff.email)]
    wait = throttle.retry_after(rt, keys)
    if wait > timedelta(0):
        raise TooManyAttempts(wait)
    with rt.db.session() as s:
        stored = lookup(s, staff.id).password_hash
    ok, _ = passwords.verify(rt, stored, current)
    if not ok:
        throttle.failed(rt, keys)
        audit.note(rt, staff.actor, "staff.password_change_failed", staff.actor)
        raise WrongCredentials()
    hashed = passwords.hash_password(rt, new)
    now = rt.clock.now()
    with rt.db.session() as s:
        user = lookup(s, staff.id)
        user.password_hash, user.updated_at = hashed, now
        ended = _end_sessions(s, staff.id, now, keep=staff.session_id)
        audit.record(s, now, staff.actor, "staff.password_changed", staff.actor, other_sessions_ended=ended)
        s.commit()


def open_sessions(rt: Runtime, who: int | str) -> list[StaffSession]:
    """The account's sessions that have neither ended nor expired, newest first."""
    now = rt.clock.now()
    with rt.db.session() as s:
        user = lookup(s, who)
        rows = s.exec(
            select(StaffSession)
            .where(
                StaffSession.staff_id == user.id,
                col(StaffSession.ended_at).is_(None),
                StaffSession.expires_at > now,
            )
            .order_by(col(StaffSession.created_at).desc())
        )
        return list(rows.all())


def open_session_counts(rt: Runtime) -> dict[int, int]:
    """For each account with any, how many sessions are open now (for the staff page)."""
    now = rt.clock.now()
    with rt.db.session() as s:
        rows = s.exec(
            select(StaffSession.staff_id).where(col(StaffSession.ended_at).is_(None), StaffSession.expires_at > now)
        ).all()
    counts: dict[int, int] = {}
    for staff_id in rows:
        counts[staff_id] = counts.get(staff_id, 0) + 1
    return counts


def revoke_sessions(rt: Runtime, who: int | str, actor: str) -> int:
    """End every session of the account now (a lost laptop, a shared computer); returns how many."""
    now = rt.clock.now()
    with rt.db.session() as s:
        user = lookup(s, who)
        ended = _end_sessions(s, user.id or 0, now)
        audit.record(s, now, actor, "staff.sessions_revoked", f"staff:{user.id}", sessions_ended=ended)
        s.commit()
        return ended


def unlock(rt: Runtime, who: int | str, actor: str) -> StaffUser:
    """Forget the account's recent sign-in and code failures, so its owner need not wait them out."""
    with rt.db.session() as s:
        user = lookup(s, who)
    throttle.clear(rt, [throttle.key(rt, "account", user.email), throttle.key(rt, "code", str(user.id))])
    audit.note(rt, actor, "staff.unlocked", f"staff:{user.id}")
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(rt: Runtime, user: StaffUser, second_factor: bool = False) -> str:
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
        s.exec(update(StaffUser).where(col(StaffUser.id) == user.id).values(last_login_at=now))
        audit.record(s, now, f"staff:{user.id}", "staff.login", f"staff:{user.id}", second_factor=second_factor)
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
        return Staff(user.id, user.email, user.role, sess.id, totp=user.totp_enabled_at is not None)


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
