"""Faults the fake can inject, and the seeded dice that decide which request suffers them."""

from __future__ import annotations

import copy
import dataclasses
import random
import threading
from dataclasses import dataclass, field
from typing import Any

EMAIL_OUTCOMES = ("bounce", "dropped", "spamreport")


@dataclass
class Faults:
    """What should go wrong. The default is nothing; set from Python or as JSON on `POST /_fake/faults`."""

    latency_ms: int = 0
    """Added to every Twilio/SendGrid API answer."""
    error_rate: float = 0.0
    """Fraction of API requests answered 500 or 503 (drawn with the provider's seed)."""
    burst_429: int = 0
    """The next N API requests answer 429 with `Retry-After: retry_after_s`."""
    retry_after_s: int = 1
    stall_ms: int = 30_000
    """How long a stalled request sleeps before answering (it is still processed: a timeout is ambiguous)."""
    timeout_rate: float = 0.0
    """Fraction of API requests that stall for `stall_ms`."""
    sms_error_codes: dict[str, int] = field(default_factory=dict)
    """To number -> Twilio code answered with 400 (21211 invalid, 21610 unsubscribed, 21614 not mobile)."""
    sms_undelivered: dict[str, int] = field(default_factory=dict)
    """To number -> error code of a later `undelivered` status callback (30001/30002 give `failed`)."""
    email_events: dict[str, str] = field(default_factory=dict)
    """Recipient -> "bounce" | "dropped" | "spamreport" instead of a plain delivery."""
    duplicate_events: bool = False
    """Post every SendGrid event batch twice, as SendGrid's at-least-once delivery may."""
    reorder_callbacks: bool = False
    """Post the terminal status callback before `sent`, as Twilio sometimes does."""

    def __post_init__(self) -> None:
        for name in ("error_rate", "timeout_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for name in ("latency_ms", "burst_429", "retry_after_s", "stall_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        bad = sorted(set(self.email_events.values()) - set(EMAIL_OUTCOMES))
        if bad:
            raise ValueError(f"email_events outcomes must be one of {EMAIL_OUTCOMES}")

    @classmethod
    def from_dict(cls, data: Any) -> Faults:
        """Build from JSON; unknown keys and wrong types raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            kwargs[name] = _coerce(name, known[name].type, value)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(name: str, type_name: Any, value: Any) -> Any:
    """Check one JSON value against the field's annotation (a string, thanks to `from __future__`)."""
    if type_name == "bool" and isinstance(value, bool):
        return value
    if type_name == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if type_name == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if type_name.startswith("dict[") and isinstance(value, dict):
        want = int if type_name == "dict[str, int]" else str
        if all(isinstance(v, want) and not isinstance(v, bool) for v in value.values()):
            return {str(k): v for k, v in value.items()}
    raise ValueError(f"fault {name} must be {type_name}")


@dataclass(frozen=True)
class Verdict:
    """What happens to one API request."""

    faults: Faults
    status: int = 0
    """0 to process normally, else 429, 500 or 503."""
    stall_s: float = 0.0


class FaultPlan:
    """Holds the current faults and rolls the seeded dice for each API request; thread-safe."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._faults = Faults()
        self._burst_left = 0
        self._rng = random.Random(seed)  # noqa: S311 - reproducible fault injection, not security

    def set(self, faults: Faults) -> None:
        faults = copy.deepcopy(faults)  # the caller may go on mutating theirs
        with self._lock:
            self._faults = faults
            self._burst_left = faults.burst_429

    def reset(self) -> None:
        with self._lock:
            self._faults = Faults()
            self._burst_left = 0
            self._rng = random.Random(self._seed)  # noqa: S311 - as above

    def current(self) -> Faults:
        """The faults in force, with `burst_429` showing how many 429s are still to come."""
        with self._lock:
            return dataclasses.replace(self._faults, burst_429=self._burst_left)

    def peek(self) -> Faults:
        """The faults in force, without copying (treat as read-only)."""
        return self._faults

    def decide(self) -> Verdict:
        with self._lock:
            faults = self._faults
            if self._burst_left > 0:
                self._burst_left -= 1
                return Verdict(faults, status=429)
            if faults.error_rate and self._rng.random() < faults.error_rate:
                return Verdict(faults, status=self._rng.choice((500, 503)))
            if faults.timeout_rate and self._rng.random() < faults.timeout_rate:
                return Verdict(faults, stall_s=faults.stall_ms / 1000)
            return Verdict(faults)
