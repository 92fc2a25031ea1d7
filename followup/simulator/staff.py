"""The clinic's staff, as the simulator plays them: each new escalation is acknowledged after a while (sometimes
after its deadline, so re-alerts happen) and closed a few days later, through the same service the dashboard uses.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from followup.models import Escalation
from followup.runtime import Runtime
from followup.services.patients import Conflict, NotFound, change_escalation

# Minutes until acknowledgement, drawn uniformly; the ranges straddle the default deadlines (15 min, 4 h, 48 h).
ACK_MINUTES = {"emergency": (3, 25), "urgent": (20, 300), "routine": (60, 60 * 60)}
CLOSE_AFTER_ACK = (timedelta(days=1), timedelta(days=5))
ACTOR = "staff:simulator"


class Staff:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.last_seen = 0
        self.done: dict[str, int] = {"acknowledge": 0, "close": 0, "refused": 0}

    def watch(self, rt: Runtime, push: Callable[[datetime, str, Any], None]) -> None:
        """Plan the acknowledgement and closing of escalations opened since the last look."""
        with rt.db.session() as s:
            rows = s.exec(
                select(Escalation.id, Escalation.tier, Escalation.created_at)
                .where(col(Escalation.id) > self.last_seen)
                .order_by(col(Escalation.id))
            ).all()
        for esc_id, tier, created_at in rows:
            assert esc_id is not None
            self.last_seen = esc_id
            r = random.Random(f"{self.seed}:staff:{esc_id}")  # noqa: S311 - simulation
            low, high = ACK_MINUTES.get(tier, ACK_MINUTES["routine"])
            ack_at = created_at + timedelta(minutes=r.uniform(low, high))
            close_at = ack_at + CLOSE_AFTER_ACK[0] + (CLOSE_AFTER_ACK[1] - CLOSE_AFTER_ACK[0]) * r.random()
            push(ack_at, "staff", (esc_id, "acknowledge"))
            push(close_at, "staff", (esc_id, "close"))

    def act(self, rt: Runtime, esc_id: int, action: str) -> None:
        try:
            change_escalation(rt, esc_id, action, ACTOR)
            self.done[action] += 1
        except (Conflict, NotFound):  # closed already, or booked by the patient: nothing to do
            self.done["refused"] += 1
