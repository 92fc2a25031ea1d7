"""What the clinic asks at triage (the article's questions) and how a submission is checked.

Contact fields are normalised here (E.164 phone, lower-cased email); a problem is an `InputError` that names the
field, so the API can answer 422 without writing anything.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator

from followup.settings import check_timezone

Location = Literal[
    "eyelid", "face", "calf", "thigh", "foot", "arm", "hand", "back", "chest", "tongue", "widespread", "other"
]
_PLURALS = {
    "calves": "calf",
    "eyelids": "eyelid",
    "arms": "arm",
    "hands": "hand",
    "feet": "foot",
    "thighs": "thigh",
    "legs": "calf",
    "leg": "calf",
    "all over": "widespread",
}
EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")


class InputError(ValueError):
    """A submitted field is wrong. `field` is its dotted path, e.g. "phone" or "answers.sleep_hours"."""

    def __init__(self, field: str, message: str, code: str = "invalid") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.code = code  # what a page tells the patient: "invalid", "not_mobile", "taken", ...


# The yes/no red-flag questions every triage answers, then three that mean "no" when left out (`Answers`).
RED_FLAG_QUESTIONS: tuple[str, ...] = (
    "weakness",
    "atrophy",
    "daily_activities",
    "speech_swallowing",
    "breathing",
    "numbness_tingling",
    "balance",
    "severe_cramps",
)
OPTIONAL_RED_FLAG_QUESTIONS: tuple[str, ...] = ("eyelid_closes", "face_spread", "vision_changes")


class Answers(BaseModel):
    """The triage questions. Booleans are red-flag questions; numbers are lifestyle factors."""

    model_config = ConfigDict(extra="forbid")

    onset_weeks: float = Field(ge=0, le=1040, description="How long the twitching has lasted, in weeks")
    locations: list[Location] = Field(default_factory=list, max_length=12, description="Where the twitching is")
    weakness: bool = Field(description="Any muscle weakness or loss of strength")
    atrophy: bool = Field(description="Visible muscle wasting or thinning")
    daily_activities: bool = Field(description="Trouble with walking, stairs, lifting, writing, buttons")
    speech_swallowing: bool = Field(description="Trouble speaking or swallowing")
    breathing: bool = Field(description="Trouble breathing")
    numbness_tingling: bool = Field(description="Numbness or tingling")
    balance: bool = Field(description="Balance or coordination problems")
    severe_cramps: bool = Field(description="Severe or disruptive cramps")
    eyelid_closes: bool = Field(False, description="Eyelid twitching closes the eye completely")
    face_spread: bool = Field(False, description="Twitching has spread to other parts of the face")
    vision_changes: bool = Field(False, description="Vision changes")
    caffeine_per_day: float = Field(ge=0, le=40, description="Cups of coffee, tea or energy drinks a day")
    sleep_hours: float = Field(ge=0, le=24, description="Hours of sleep a night")
    stress: int = Field(ge=0, le=10, description="Stress, 0 (none) to 10 (extreme)")
    water_glasses: float = Field(ge=0, le=60, description="Glasses of water a day")
    intense_exercise: bool = Field(description="Intense exercise in the last weeks")
    alcohol_per_week: float = Field(0, ge=0, le=200, description="Alcoholic drinks a week")

    @field_validator("locations", mode="before")
    @classmethod
    def _plural(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [_PLURALS.get(x.strip().lower(), x.strip().lower()) if isinstance(x, str) else x for x in v]
        return v

    def for_program(self) -> dict[str, Any]:
        """The answers as program conditions see them, with derived facts."""
        data = self.model_dump()
        data["eyelid_only"] = bool(self.locations) and set(self.locations) == {"eyelid"}
        return data


class TriageIn(BaseModel):
    """A triage submission from the clinic's record system or the intake page."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(None, max_length=40, description="Mobile number; E.164 or national format")
    email: str | None = Field(None, max_length=254)
    channel: Literal["sms", "email"]
    timezone: str = Field(description="IANA time zone, e.g. America/Los_Angeles")
    language: Literal["en", "es"] = "en"
    consent: bool = Field(description="The patient agreed to receive messages")
    consent_text: str | None = Field(None, max_length=2000, description="The wording the patient agreed to")
    answers: Answers

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = " ".join(v.split())
        if not "".join(ch for ch in v if unicodedata.category(ch) != "Cf").strip():  # zero-width only is blank
            raise ValueError("must not be blank")
        return v

    @field_validator("name", "phone", "email", "timezone", "consent_text")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        """Control characters (NUL, escapes) and lone surrogates are never part of a name or an address, and
        the database cannot store some of them."""
        if v is not None and any(_unprintable(ch) for ch in v):
            raise ValueError("must not contain control characters")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @field_validator("phone", "email", mode="before")
    @classmethod
    def _blank(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v


def _unprintable(ch: str) -> bool:
    kind = unicodedata.category(ch)
    return kind == "Cs" or (kind == "Cc" and ch not in "\t\n\r")


@dataclass(frozen=True)
class Contact:
    phone: str | None
    email: str | None


def check_contact(t: TriageIn, region: str, allowed: Sequence[str] = ()) -> Contact:
    """Consent and contact rules across fields; InputError names the field at fault. `allowed`: the regions
    patients may be texted in (empty: any)."""
    if not t.consent:
        raise InputError("consent", "the patient must agree to receive messages")
    if not t.phone and not t.email:
        raise InputError("phone", "give a mobile number or an email address (neither was given)")
    if t.channel == "sms" and not t.phone:
        raise InputError("phone", "channel is sms but no mobile number was given")
    if t.channel == "email" and not t.email:
        raise InputError("email", "channel is email but no email address was given")
    email = None
    if t.email is not None:
        email = t.email.strip().lower()
        if not EMAIL.match(email):
            raise InputError("email", "is not an email address")
    phone = normalise_phone(t.phone, region, allowed) if t.phone else None
    return Contact(phone, email)


def normalise_phone(raw: str, region: str, allowed: Sequence[str] = ()) -> str:
    """E.164 for a mobile-capable number in one of the `allowed` regions (empty: any), or InputError('phone')."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InputError("phone", f"is not a phone number ({exc.args[0] if exc.args else exc})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InputError("phone", "is not a valid phone number")
    kind = phonenumbers.number_type(parsed)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        phonenumbers.PhoneNumberType.UNKNOWN,
    ):
        raise InputError("phone", "cannot receive text messages (not a mobile number)", "not_mobile")
    where = phonenumbers.region_code_for_number(parsed)
    if allowed and where not in allowed:
        # The clinic texts only where it may (carrier rules, costs, the law): a number elsewhere is refused.
        only = ", ".join(allowed)
        raise InputError("phone", f"is a number in {where}; the clinic texts numbers in {only} only", "region")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def answer_fields() -> dict[str, type]:
    """The fields a program condition may test: numbers and yes/no answers (a list such as `locations` compares
    with nothing a condition can say)."""
    fields: dict[str, type] = {name: object for name in Answers.model_fields if name != "locations"}
    fields["eyelid_only"] = bool
    return fields
