"""The order of the staff queue ("Needs attention"), as a pure rule.

Overdue first (still open, past its acknowledgement clock: someone must act now), then the other open escalations
by tier and age, then those someone already acknowledged. Within each band the most serious tier comes first, then
the oldest. Issue 12: acknowledged rows used to sit above open ones that were hours overdue.
"""

from __future__ import annotations

from datetime import datetime

from followup.core.vocab import EscalationStatus, queue_rank

OVERDUE, OPEN, ACKNOWLEDGED, OTHER = range(4)


def band(status: str, overdue: bool) -> int:
    """Which band of the queue an escalation sits in."""
    if status == EscalationStatus.OPEN:
        return OVERDUE if overdue else OPEN
    if status == EscalationStatus.ACKNOWLEDGED:
        return ACKNOWLEDGED
    return OTHER


def attention_key(status: str, overdue: bool, tier: str, created_at: datetime) -> tuple[int, int, datetime]:
    """Sort key: band, then tier (emergency first; an unknown tier last), then the oldest first."""
    return band(status, overdue), queue_rank(tier), created_at
