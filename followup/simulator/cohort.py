"""The synthetic cohort: patients and their replies, each a pure function of (seed, patient index).

Nothing is kept per patient in memory: the simulator recomputes a patient from its index, and reads the index
back from the address a message went to (`index_of`). Replies come from a small built-in list of phrasings,
each labelled here with what it is (benign, red flag, opt-out); none comes from the evaluation set.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from followup.core.triage import RED_FLAG_QUESTIONS

# Zones on several continents; most observe DST, on different dates (US second Sunday of March, EU last Sunday
# of March, Australia and New Zealand first Sunday of April), some never do (Phoenix, Kolkata, Tokyo).
ZONES: tuple[tuple[str, int], ...] = (
    ("America/Los_Angeles", 22),
    ("America/Denver", 6),
    ("America/Phoenix", 4),
    ("America/Chicago", 14),
    ("America/New_York", 22),
    ("America/Sao_Paulo", 4),
    ("Europe/London", 8),
    ("Europe/Berlin", 6),
    ("Asia/Kolkata", 4),
    ("Asia/Tokyo", 3),
    ("Australia/Sydney", 4),
    ("Pacific/Auckland", 3),
)
AREA_CODES = ("212", "310", "312", "415", "617", "713", "206", "303", "404", "602")
EMAIL_DOMAIN = "sim.example"
FIRST_NAMES = ("Ana", "Ben", "Chen", "Dara", "Emeka", "Farah", "Gus", "Hana", "Ivan", "Jo", "Kofi", "Lena")
RED_FLAG_ANSWERS = ("weakness", "speech_swallowing", "breathing", "numbness_tingling", "atrophy")

# Labelled reply phrasings. A red-flag phrase is one the clinic must hear about: each states a symptom of the
# patient, plainly, in the present (the detector's harder cases live in its own tests, not here).
BENIGN_REPLIES: tuple[str, ...] = (
    "Feeling better, thanks!",
    "About the same as last week.",
    "The twitching in my calf is less since I cut down on coffee.",
    "Still some eyelid twitching but otherwise fine.",
    "Slept much better this week and the twitches are calmer.",
    "Thanks for the tips, drinking more water now.",
    "Better. Exercise seems to help.",
    "Mostly the same, nothing new to report.",
    "Mejor, gracias.",
    "ok thanks",
)
RED_FLAG_REPLIES: tuple[str, ...] = (
    "My right hand is getting weaker and I keep dropping things.",
    "I am having trouble swallowing my food.",
    "My left leg feels weaker and my foot drags when I walk.",
    "I'm short of breath when I lie down.",
    "My speech has become slurred this week.",
    "I have numbness and tingling in both feet now.",
    "The muscle in my thumb looks thinner, it's wasting away.",
    "I can't climb the stairs anymore, my legs are too weak.",
)
STOP_REPLY = "STOP"


@dataclass(frozen=True)
class SimPatient:
    index: int
    name: str
    phone: str
    email: str
    channel: str  # sms | email
    timezone: str
    language: str
    enroll_at: datetime
    answers: dict[str, Any]
    red_flag_at_triage: bool


EXCHANGES = 350  # exchanges 200-549: clear of 555, where the clinic's own (fictional) numbers live


def phone_of(index: int) -> str:
    """A valid US number that encodes the index (10 area codes x 350 exchanges x 10,000 lines = 35 million)."""
    area = AREA_CODES[index % len(AREA_CODES)]
    rest = index // len(AREA_CODES)
    if rest // 10_000 >= EXCHANGES:
        raise ValueError(f"patient index {index} is beyond what phone numbers can encode")
    return f"+1{area}{200 + rest // 10_000:03d}{rest % 10_000:04d}"


def email_of(index: int) -> str:
    return f"p{index}@{EMAIL_DOMAIN}"


def index_of(address: str) -> int | None:
    """The patient index an address belongs to, or None (a clinic address, say)."""
    if address.endswith("@" + EMAIL_DOMAIN) and address.startswith("p"):
        local = address[1 : -len(EMAIL_DOMAIN) - 1]
        return int(local) if local.isdigit() else None
    if address.startswith("+1") and len(address) == 12 and address[2:5] in AREA_CODES:
        exchange, line = int(address[5:8]) - 200, int(address[8:])
        if not 0 <= exchange < EXCHANGES:
            return None
        return (exchange * 10_000 + line) * len(AREA_CODES) + AREA_CODES.index(address[2:5])
    return None


class Cohort:
    """`size` patients enrolling at random moments between `start` and `start + enroll_span`."""

    def __init__(
        self,
        seed: int,
        size: int,
        start: datetime,
        enroll_span: timedelta,
        *,
        email_share: float = 0.35,
        spanish_share: float = 0.15,
        triage_red_flag_rate: float = 0.02,
    ) -> None:
        self.seed, self.size, self.start, self.enroll_span = seed, size, start, enroll_span
        self.email_share, self.spanish_share = email_share, spanish_share
        self.triage_red_flag_rate = triage_red_flag_rate
        self._zones = [z for z, _ in ZONES]
        self._weights = [w for _, w in ZONES]
        self._tz_cache: dict[int, str] = {}

    def rng(self, index: int, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}:{index}:{purpose}")  # noqa: S311 - simulation, not security

    def timezone(self, index: int) -> str:
        """The patient's zone (asked for every send: cached, as a string per patient is small)."""
        tz = self._tz_cache.get(index)
        if tz is None:
            tz = self.rng(index, "tz").choices(self._zones, self._weights)[0]
            if len(self._tz_cache) < 1_000_000:
                self._tz_cache[index] = tz
        return tz

    def patient(self, index: int) -> SimPatient:
        r = self.rng(index, "patient")
        channel = "email" if r.random() < self.email_share else "sms"
        enroll_at = self.start + timedelta(seconds=r.uniform(0, self.enroll_span.total_seconds()))
        red_flag = r.random() < self.triage_red_flag_rate
        answers: dict[str, Any] = {
            # Twitching for 4 weeks or more escalates at triage (clinic/intake.toml): few enrolled patients have it.
            "onset_weeks": round(r.uniform(0.5, 3.5), 1),
            "locations": r.sample(["calf", "eyelid", "thigh", "arm", "foot"], r.randint(1, 2)),
            **dict.fromkeys(RED_FLAG_QUESTIONS, False),
            "caffeine_per_day": r.choice([0, 1, 2, 3, 4, 6]),
            "sleep_hours": r.choice([5, 6, 6.5, 7, 8]),
            "stress": r.randint(0, 10),
            "water_glasses": r.choice([2, 4, 6, 8]),
            "intense_exercise": r.random() < 0.3,
            "alcohol_per_week": r.choice([0, 2, 5, 10]),
        }
        if red_flag:
            answers[r.choice(RED_FLAG_ANSWERS)] = True
        return SimPatient(
            index=index,
            name=f"{r.choice(FIRST_NAMES)} Sim{index}",
            phone=phone_of(index),
            email=email_of(index),
            channel=channel,
            timezone=self.timezone(index),
            language="es" if r.random() < self.spanish_share else "en",
            enroll_at=enroll_at,
            answers=answers,
            red_flag_at_triage=red_flag,
        )

    def triage_body(self, p: SimPatient) -> dict[str, Any]:
        """The triage submission the clinic's record system would send for this patient."""
        return {
            "name": p.name,
            "phone": p.phone,
            "email": p.email,
            "channel": p.channel,
            "timezone": p.timezone,
            "language": p.language,
            "consent": True,
            "answers": p.answers,
        }


@dataclass(frozen=True)
class ReplyPlan:
    """A reply the patient will send: when, what, and what it is."""

    delay: timedelta
    body: str
    label: str  # benign | red_flag | stop


def plan_reply(r: random.Random, *, reply_rate: float, red_flag_rate: float, stop_rate: float) -> ReplyPlan | None:
    """Whether and how a patient answers a check-in."""
    if r.random() >= reply_rate:
        return None
    delay = timedelta(minutes=r.uniform(3, 8 * 60))
    roll = r.random()
    if roll < red_flag_rate:
        return ReplyPlan(delay, r.choice(RED_FLAG_REPLIES), "red_flag")
    if roll < red_flag_rate + stop_rate:
        return ReplyPlan(delay, STOP_REPLY, "stop")
    return ReplyPlan(delay, r.choice(BENIGN_REPLIES), "benign")
