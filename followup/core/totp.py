"""Time-based one-time codes (RFC 6238, what authenticator apps show): 6 digits, a new one every 30 seconds.

A code is accepted for the step it was made in and one step either side (a phone's clock may be half a minute
off), and only for a step later than the last one accepted: a code seen over someone's shoulder cannot be used
again.
"""

from __future__ import annotations

import hmac
import re
from datetime import datetime

import pyotp

DRIFT = 1  # steps either side of now
_CODE = re.compile(r"[0-9]{6}")  # ASCII digits only: \\d would take "١٢٣٤٥٦"


def new_secret() -> str:
    """A random base32 secret of 160 bits (what RFC 4226 recommends)."""
    return str(pyotp.random_base32(32))


def uri(secret: str, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app takes (pasted, or typed in as the secret alone)."""
    return str(pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer))


def matching_step(secret: str, code: str, now: datetime, after: int | None = None) -> int | None:
    """The time step `code` belongs to (within DRIFT of `now` and later than `after`), or None."""
    code = re.sub(r"\s", "", code)
    if not _CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    found = None
    for step in range(current - DRIFT, current + DRIFT + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and (after is None or step > after):
            found = step  # every step is compared, so the time taken says nothing about which matched
    return found


def code_at(secret: str, when: datetime) -> str:
    """The code an authenticator app shows at `when` (for tests and the simulator)."""
    return str(pyotp.TOTP(secret).at(when))
