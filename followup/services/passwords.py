"""Staff passwords: the rules for a new one, and argon2id hashing bounded by the runtime's slots.

Each argon2id hash or check takes 64 MiB and about a tenth of a second of CPU. Sixteen at once took a server from
218 to 1,131 MiB (issue 11), so every one runs inside one of `rt.password_slots`; with none free, `Busy` is raised
at once (the web layer answers 503 with Retry-After) instead of queueing work and memory.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from followup.core.throttle import Busy
from followup.runtime import Runtime

__all__ = ["MAX_PASSWORD", "MIN_PASSWORD", "Busy", "PasswordError", "check_password", "hash_password", "verify"]

MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte "password" is a denial of service

_hasher = PasswordHasher()
# Checked against when the account is unknown or disabled, so that an attempt costs the same either way.
DUMMY_HASH = _hasher.hash("not-a-password-" + secrets.token_hex(8))


class PasswordError(ValueError):
    """A new password breaks a rule (the message names the field)."""


def check_password(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD:
        raise PasswordError(f"{field}: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise PasswordError(f"{field}: at most {MAX_PASSWORD} characters")


def hash_password(rt: Runtime, password: str) -> str:
    """An argon2id hash of a password that passed `check_password`; raises Busy when no slot is free."""
    with rt.password_slots.take():
        return _hasher.hash(password)


def verify(rt: Runtime, hashed: str | None, password: str) -> tuple[bool, str | None]:
    """(matches, a new hash when the stored one uses older parameters). `hashed=None` checks against a dummy
    hash, for the same cost as a real account. Raises Busy when no slot is free."""
    with rt.password_slots.take():
        try:
            ok = bool(_hasher.verify(hashed or DUMMY_HASH, password[:MAX_PASSWORD]))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, None
        if not ok or hashed is None:
            return False, None
        return True, _hasher.hash(password) if _hasher.check_needs_rehash(hashed) else None
