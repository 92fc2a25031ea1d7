"""Staff passwords: the rules for a new one, and argon2id hashing bounded by the runtime's slots.

Each argon2id hash or check takes 64 MiB and about a tenth of a second of CPU on four threads. Sixteen at once took
a server from 218 to 1,131 MiB (issue 11), so every one runs inside one of `rt.password_slots`; with none free,
`Busy` is raised at once (the web layer answers 503 with Retry-After) instead of queueing work and memory. The
hashing itself runs on threads of lower CPU priority (nice 10 on Linux, where it applies per thread and argon2's
own threads inherit it), so a login flood leaves the CPU to patients' webhooks and /healthz first.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

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


NICE = 10
T = TypeVar("T")


def _lower_priority() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


# At most `password_hash_slots` tasks are ever in it (each is submitted while holding a slot): it never queues.
_low = ThreadPoolExecutor(max_workers=32, thread_name_prefix="argon2", initializer=_lower_priority)


def _hashing(rt: Runtime, work: Callable[[], T]) -> T:
    """`work` on a low-priority thread, while holding one of the runtime's slots (Busy if none is free)."""
    with rt.password_slots.take():
        return _low.submit(work).result()


class PasswordError(ValueError):
    """A new password breaks a rule (the message names the field)."""


def check_password(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD:
        raise PasswordError(f"{field}: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise PasswordError(f"{field}: at most {MAX_PASSWORD} characters")


def hash_password(rt: Runtime, password: str) -> str:
    """An argon2id hash of a password that passed `check_password`; raises Busy when no slot is free."""
    return _hashing(rt, lambda: _hasher.hash(password))


def verify(rt: Runtime, hashed: str | None, password: str) -> tuple[bool, str | None]:
    """(matches, a new hash when the stored one uses older parameters). `hashed=None` checks against a dummy
    hash, for the same cost as a real account. Raises Busy when no slot is free."""

    def check() -> tuple[bool, str | None]:
        try:
            ok = bool(_hasher.verify(hashed or DUMMY_HASH, password[:MAX_PASSWORD]))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, None
        if not ok or hashed is None:
            return False, None
        return True, _hasher.hash(password) if _hasher.check_needs_rehash(hashed) else None

    return _hashing(rt, check)
