"""What a simulation run is asked to do: cohort size, virtual days, seed, start, tick and event rates."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from followup.simulator.provider import Rates

DEFAULT_START = datetime(2027, 2, 22, 8, 0, tzinfo=UTC)  # US, EU and Australian DST changes fall in the next 6 weeks


@dataclass
class SimConfig:
    patients: int = 200
    days: int = 30
    seed: int = 1
    start: datetime = DEFAULT_START
    tick: timedelta = timedelta(minutes=5)
    enroll_days: float = 7.0
    database_url: str | None = None  # default: a throwaway SQLite file
    read_ahead: bool = True  # embed the next tick's replies in a second process (simulator/ahead.py)
    rates: Rates = field(default_factory=Rates)
