"""Failed Inbound Parse credentials, limited and audited per client address.

The Inbound Parse URL carries a password (HTTP Basic); without a limit it could be tried 200 times in 0.4 s
(issue 11). Each failure is counted against the caller's address (services/throttle.py, "inbound_auth": ten
free, then waits that double up to five minutes) and audited by a keyed hash of the address, never the address.
While a wait runs nothing is checked; the web layer answers 503 with Retry-After, which SendGrid retries for up
to 72 hours, so mail from an address that shares SendGrid's is delayed, not lost.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from followup.runtime import Runtime
from followup.services import audit, throttle

log = logging.getLogger("followup.inbound_auth")


def retry_after(rt: Runtime, address: str) -> timedelta:
    """How long this address must wait before its credentials are checked again (zero: check them)."""
    return throttle.retry_after(rt, [throttle.key(rt, "inbound_auth", address)])


def failed(rt: Runtime, address: str) -> timedelta:
    """Count and audit one failed attempt; returns the wait it now imposes."""
    wait = throttle.failed(rt, [throttle.key(rt, "inbound_auth", address)])
    ref = rt.links.keyed_hash(address, 12)
    log.warning("inbound email credentials refused from sender %s (next check in %ds)", ref, wait.total_seconds())
    audit.note(rt, "anonymous", "webhooks.inbound_auth_failed", f"sender:{ref}", wait_seconds=int(wait.total_seconds()))
    return wait
