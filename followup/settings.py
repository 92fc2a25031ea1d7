"""Settings: one validated object, built once at start from `settings.toml` and the environment.

Every key in `settings.toml` can be overridden by `FOLLOWUP_<SECTION>__<KEY>` (lists as JSON). Secrets are read
from the environment only: a secret found in the file is refused.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import math
import os
import re
import tomllib
from collections import Counter
from collections.abc import Mapping
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

ENV_PREFIX = "FOLLOWUP_"
SECRETS = {
    ("twilio", "auth_token"),
    ("sendgrid", "api_key"),
    ("sendgrid", "inbound_password"),
    ("security", "secret_key"),
}


class SettingsError(Exception):
    """A setting is missing or wrong; the message names the key and what is wrong."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Empty: the address actually served, http://<host>:<port>, so `serve --port 8001` puts 8001 in booking links
    # and signs webhooks for it (issue 12). Set it to the https address Twilio and SendGrid call in production.
    public_url: str = ""
    max_body_bytes: int = Field(1_000_000, ge=1024)
    _public_url_derived: bool = PrivateAttr(default=False)

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http(s) URL such as https://followup.clinic.example")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _served_url(self) -> ServerSettings:
        if not self.public_url:
            object.__setattr__(self, "public_url", served_url(self.host, self.port))
            self._public_url_derived = True
        return self

    @property
    def public_url_derived(self) -> bool:
        """True when public_url was left empty and follows host and port."""
        return self._public_url_derived


def send_in_flight_seconds(timeout: float, settle: float) -> float:
    """The longest a provider call can still be on its way after it starts: the HTTP client applies `timeout` to
    connecting and again to reading, and the provider may take `settle` more to show the message to a lookup."""
    return 2 * timeout + settle


def served_url(host: str, port: int) -> str:
    """The URL a browser on this machine uses to reach `host:port` (0.0.0.0 and :: listen everywhere)."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (names the wildcard, does not bind it)
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class DatabaseSettings(_Section):
    url: str = "sqlite:///var/followup.db"

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not (v.startswith("sqlite:") or v.startswith("postgresql")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            v = "postgresql+psycopg://" + v.split("://", 1)[1]
        return v


class ClinicSettings(_Section):
    name: str = "Achilles Neurology Clinic"
    phone: str = "+1 310 555 0100"
    emergency_number: str = "911"
    timezone: str = "America/Los_Angeles"
    default_region: str = "US"
    oncall_sms: list[str] = []
    oncall_email: list[str] = []
    program: Path = Path("clinic/program.toml")
    red_flags: Path = Path("clinic/red_flags.toml")
    intake_rules: Path = Path("clinic/intake.toml")
    keywords: Path = Path("clinic/keywords.toml")
    templates: Path = Path("templates")
    languages: list[str] = ["en", "es"]

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @field_validator("emergency_number")
    @classmethod
    def _emergency(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9]{2,6}", v.strip()):
            raise ValueError(f"{v!r} is not an emergency number: digits only, e.g. 911, 112, 999")
        return v.strip()

    @field_validator("default_region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{v!r} is not a region code phonenumbers knows (e.g. US, GB, DE)")
        return v.upper()

    @field_validator("oncall_email")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for e in v:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", e):
                raise ValueError(f"{e!r} is not an email address")
        return [e.lower() for e in v]

    @field_validator("oncall_sms")
    @classmethod
    def _numbers(cls, v: list[str], info: ValidationInfo) -> list[str]:
        # Stored in E.164: Twilio refuses any other form of a To number (21211).
        region = info.data.get("default_region", "US")
        out = []
        for n in v:
            try:
                parsed = phonenumbers.parse(n, region)
            except phonenumbers.NumberParseException as exc:
                raise ValueError(f"{n!r} is not a phone number ({exc})") from exc
            if not phonenumbers.is_valid_number(parsed):
                raise ValueError(f"{n!r} is not a valid phone number")
            out.append(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
        return out


class ScheduleSettings(_Section):
    send_from: time = time(9, 0)  # quiet hours are outside [send_from, send_until), patient's local time
    send_until: time = time(20, 0)
    ttl_welcome: timedelta = timedelta(days=2)
    ttl_tip: timedelta = timedelta(hours=24)
    ttl_checkin: timedelta = timedelta(hours=36)
    ttl_closing: timedelta = timedelta(days=2)
    ttl_urgent: timedelta = timedelta(hours=2)

    @model_validator(mode="after")
    def _window(self) -> ScheduleSettings:
        if self.send_from >= self.send_until:
            raise ValueError("send_from must be before send_until (the daytime window messages may go out in)")
        return self


class DispatchSettings(_Section):
    enabled: bool = True
    interval_seconds: float = Field(2.0, gt=0)
    batch_size: int = Field(200, ge=1, le=10_000)
    concurrency: int = Field(16, ge=1, le=512)
    lease_seconds: int = Field(120, ge=5)
    max_attempts: int = Field(6, ge=1, le=50)
    backoff_base_seconds: float = Field(30.0, gt=0)
    backoff_max_seconds: float = Field(3600.0, gt=0)
    per_sender_per_second: float = Field(10.0, gt=0)
    email_reconcile_grace_seconds: int = Field(600, ge=0)
    # After a provider call ends, how long before a lookup at the provider is trusted to show what it accepted.
    lookup_settle_seconds: float = Field(1.0, ge=0, le=60)
    # A worker's claim on a stored reply it is acting on; a worker that dies leaves it to be taken again after this.
    reply_claim_seconds: float = Field(60.0, gt=0, le=3600)


class TwilioSettings(_Section):
    account_sid: str = ""
    auth_token: str = ""
    from_number: str = ""
    # A Messaging Service ("MG" and 32 hex digits): SMS go out through it, Twilio picks the number from its pool
    # and queues, and pacing is per service (README, "Sending through a Twilio Messaging Service").
    messaging_service_sid: str = ""
    api_base: str = ""
    timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("messaging_service_sid")
    @classmethod
    def _service_sid(cls, v: str) -> str:
        if v and not re.fullmatch(r"MG[0-9a-fA-F]{32}", v):
            raise ValueError("must be a Messaging Service SID: MG followed by 32 hex digits")
        return v


class SendgridSettings(_Section):
    api_key: str = ""
    from_email: str = "followup@clinic.example"
    from_name: str = "Achilles Neurology Clinic"
    reply_domain: str = "reply.clinic.example"
    api_base: str = ""
    timeout_seconds: float = Field(10.0, gt=0)
    event_public_key: str = ""
    event_max_age_seconds: int = Field(600, ge=10)
    inbound_username: str = "sendgrid"
    inbound_password: str = ""
    inbound_max_bytes: int = Field(5_000_000, ge=10_000)


class SecuritySettings(_Section):
    secret_key: str = ""
    environment: Literal["development", "production"] = "development"
    booking_link_days: int = Field(14, ge=1, le=90)
    # Password hashes (argon2id, 64 MiB each) computed at once by one process; a sign-in past it gets 503 at
    # once (bench/login_flood.py: the memory bound is about this many times 64 MiB over the resting size).
    password_hash_slots: int = Field(2, ge=1, le=32)


class ContactSettings(_Section):
    """Contacts a patient gives on the public form are confirmed before use (double opt-in, followup/services/
    confirmation.py); where the clinic may text at all."""

    # Regions (ISO codes) whose numbers may be texted; empty: the clinic's own (clinic.default_region).
    allowed_regions: list[str] = []
    confirm_hours: int = Field(default=72, ge=1, le=24 * 30)  # a confirmation request expires after this
    confirm_per_day: int = Field(default=3, ge=1, le=100)  # confirmation requests one number or address may get

    @field_validator("allowed_regions")
    @classmethod
    def _regions(cls, v: list[str]) -> list[str]:
        for code in v:
            if code.upper() not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(f"{code!r} is not a region code phonenumbers knows (e.g. US, GB, DE)")
        return [c.upper() for c in v]


class PrivacySettings(_Section):
    """How long message texts are kept (see followup/services/privacy.py)."""

    retention_days: int = Field(default=180, ge=0, le=36_500)  # 0 keeps them for ever


class LimitSettings(_Section):
    """Abuse limits per sender (see followup/web/limits.py): a token bucket that refills at this rate a minute
    and holds at most this many."""

    inbound_sms_per_minute: int = Field(default=10, ge=1, le=10_000)
    intake_per_minute: int = Field(default=10, ge=1, le=10_000)
    # Inbound SMS over the per-minute limit are still stored (marked as a flood) and read for red flags, at most
    # this many an hour per number; past that they are stored unread, for staff to see.
    flood_reads_per_hour: int = Field(default=30, ge=1, le=10_000)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class BookingSettings(_Section):
    """The clinic's bookable calendar, in the clinic's zone (clinic.timezone)."""

    hours: dict[str, list[str]] = {
        "mon": ["09:00-12:30", "13:30-17:00"],
        "tue": ["09:00-12:30", "13:30-17:00"],
        "wed": ["09:00-12:30", "13:30-17:00"],
        "thu": ["09:00-12:30", "13:30-17:00"],
        "fri": ["09:00-13:00"],
    }
    slot_minutes: int = Field(default=30, ge=5, le=240)
    horizon_days: int = Field(default=21, ge=1, le=120)
    closed_days: list[date] = []
    urgent_reserve_hours: int = Field(default=48, ge=0, le=336)
    min_notice_minutes: int = Field(default=60, ge=0, le=10_080)
    external_url: str = ""

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, spans in v.items():
            if day not in WEEKDAYS:
                raise ValueError(f"{day!r} is not a weekday: use {', '.join(WEEKDAYS)}")
            bounds = []
            for span in spans:
                m = _HOURS.match(span)
                if not m or (m[1], m[2]) >= (m[3], m[4]):
                    raise ValueError(f'{day}: {span!r} must be a span like "09:00-12:30" that ends after it starts')
                bounds.append((m[1] + m[2], m[3] + m[4]))
            bounds.sort()
            for (_, end), (start, _) in itertools.pairwise(bounds):
                if start < end:
                    raise ValueError(f"{day}: opening hours overlap")
        return v

    @field_validator("external_url")
    @classmethod
    def _external(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be empty or an http(s) URL of the clinic's own scheduler")
        return v

    def opening(self) -> dict[int, list[tuple[time, time]]]:
        """Opening spans per weekday number (Monday 0), as local clock times."""
        out: dict[int, list[tuple[time, time]]] = {}
        for day, spans in self.hours.items():
            for span in spans:
                start, end = span.split("-")
                out.setdefault(WEEKDAYS.index(day), []).append((time.fromisoformat(start), time.fromisoformat(end)))
        return {k: sorted(v) for k, v in out.items()}


class AlertSettings(_Section):
    """Who owns an escalation: acknowledgement deadlines, re-alert tiers, and the daily digest."""

    emergency_ack_minutes: int = Field(default=15, ge=1, le=1440)
    urgent_ack_minutes: int = Field(default=240, ge=1, le=10_080)
    routine_ack_hours: int = Field(default=48, ge=1, le=720)
    escalation_tiers: list[list[str]] = []
    check_seconds: float = Field(default=60.0, ge=1, le=3600)
    digest_time: time = time(7, 30)

    @field_validator("escalation_tiers")
    @classmethod
    def _tiers(cls, v: list[list[str]]) -> list[list[str]]:
        out = []
        for i, tier in enumerate(v, start=1):
            if not tier:
                raise ValueError(f"tier {i} is empty: list at least one phone number or email address")
            out.append([_contact(c, i) for c in tier])
        return out


def _contact(raw: str, tier: int) -> str:
    """An email address (lower-cased) or an E.164 phone number; anything else is refused."""
    if "@" in raw:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", raw):
            raise ValueError(f"tier {tier}: {raw!r} is not an email address")
        return raw.lower()
    try:
        parsed = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"tier {tier}: {raw!r} is not an email or a +country phone number ({exc})") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"tier {tier}: {raw!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


WEBHOOK_EVENTS = (
    "escalation.opened",
    "escalation.acknowledged",
    "escalation.booked",
    "escalation.closed",
    "patient.opted_out",
    "appointment.booked",
)


class WebhookEndpoint(_Section):
    """One receiver of signed outbound webhooks (Standard Webhooks). Its secret comes from the environment:
    FOLLOWUP_WEBHOOK_SECRET_<NAME> (upper case, `-` as `_`), never from settings.toml."""

    name: str
    url: str
    secret: str = ""
    trusted: bool = False  # only a trusted endpoint (the clinic's own EHR interface) gets health details
    events: list[str] = list(WEBHOOK_EVENTS)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", v):
            raise ValueError(f"{v!r}: a short lower-case name (letters, digits, - and _), e.g. pager")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        unknown = [e for e in v if e not in WEBHOOK_EVENTS]
        if unknown or not v:
            raise ValueError(f"unknown events {unknown or v}: choose from {', '.join(WEBHOOK_EVENTS)}")
        return v

    @model_validator(mode="after")
    def _secret(self) -> WebhookEndpoint:
        env = webhook_secret_env(self.name)
        if not self.secret:
            raise ValueError(f"{self.name}: no signing secret; set {env} to whsec_ and base64 of 24+ random bytes")
        if not self.secret.startswith("whsec_"):
            raise ValueError(f"{self.name}: the secret ({env}) must start with whsec_")
        try:
            raw = base64.b64decode(self.secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            raise ValueError(f"{self.name}: the secret ({env}) is not whsec_ followed by base64") from None
        if len(raw) < 24:
            raise ValueError(f"{self.name}: the secret ({env}) is too short: 24 random bytes at least")
        return self


def webhook_secret_env(name: str) -> str:
    return f"{ENV_PREFIX}WEBHOOK_SECRET_{name.upper().replace('-', '_')}"


class WebhookSettings(_Section):
    """Signed outbound webhooks (followup/services/webhooks_out.py)."""

    endpoints: list[WebhookEndpoint] = []
    check_seconds: float = Field(5.0, ge=0.5, le=3600)
    timeout_seconds: float = Field(10.0, gt=0, le=60)
    max_attempts: int = Field(12, ge=1, le=50)
    backoff_base_seconds: float = Field(10.0, gt=0)
    backoff_max_seconds: float = Field(3600.0, gt=0)
    lease_seconds: int = Field(120, ge=5)
    batch_size: int = Field(50, ge=1, le=1000)

    @field_validator("endpoints")
    @classmethod
    def _unique(cls, v: list[WebhookEndpoint]) -> list[WebhookEndpoint]:
        names = [e.name for e in v]
        if len(set(names)) != len(names):
            raise ValueError("two endpoints share a name")
        return v


class VoiceSettings(_Section):
    """A phone call (Twilio Voice) for an emergency escalation nobody acknowledged (followup/services/voice.py)."""

    enabled: bool = True  # needs Twilio configured; calls each phone number of the tier being re-alerted
    gather_timeout_seconds: int = Field(10, ge=3, le=60)  # how long the call waits for a key


class MetricsSettings(_Section):
    """/metrics (Prometheus) and /readyz."""

    allow_addresses: list[str] = []  # scrapers allowed without an API token, e.g. ["10.0.0.7"]
    ready_max_age_seconds: float = Field(120.0, ge=5)  # /readyz fails when no dispatcher ran within this
    figures_cache_seconds: float = Field(10.0, ge=0, le=300)  # database figures reused by scrapes this close

    @field_validator("allow_addresses")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for a in v:
            try:
                ipaddress.ip_network(a, strict=False)
            except ValueError:
                raise ValueError(f"{a!r} is not an IP address or network") from None
        return v


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    clinic: ClinicSettings = ClinicSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    dispatch: DispatchSettings = DispatchSettings()
    twilio: TwilioSettings = TwilioSettings()
    sendgrid: SendgridSettings = SendgridSettings()
    security: SecuritySettings = SecuritySettings()
    booking: BookingSettings = BookingSettings()
    alerts: AlertSettings = AlertSettings()
    privacy: PrivacySettings = PrivacySettings()
    limits: LimitSettings = LimitSettings()
    contacts: ContactSettings = ContactSettings()
    webhooks: WebhookSettings = WebhookSettings()
    voice: VoiceSettings = VoiceSettings()
    metrics: MetricsSettings = MetricsSettings()

    @model_validator(mode="after")
    def _live(self) -> Settings:
        if self.security.environment == "production":
            if not self.security.secret_key:
                raise ValueError("security.secret_key: set FOLLOWUP_SECURITY__SECRET_KEY to 32+ random characters")
            # Secrets we choose ourselves must be strong; the Twilio token and SendGrid key are issued to us.
            for (section, key), value in (
                (("security", "secret_key"), self.security.secret_key),
                (("sendgrid", "inbound_password"), self.sendgrid.inbound_password),
            ):
                problem = secret_problem(value) if value else None
                if problem:
                    raise ValueError(
                        f"{section}.{key}: too weak for production: {problem}; generate one with "
                        f"`openssl rand -hex 32` and set {ENV_PREFIX}{section.upper()}__{key.upper()}"
                    )
            if not self.server.public_url.startswith("https://"):
                raise ValueError("server.public_url: must be https:// in production")
        for section, timeout in (("twilio", self.twilio.timeout_seconds), ("sendgrid", self.sendgrid.timeout_seconds)):
            in_flight = send_in_flight_seconds(timeout, self.dispatch.lookup_settle_seconds)
            if self.dispatch.lease_seconds < in_flight + 1:
                # A send still on its way when its lease ran out could be looked up, not found, and sent again.
                raise ValueError(
                    f"dispatch.lease_seconds: {self.dispatch.lease_seconds} s is too short for "
                    f"{section}.timeout_seconds = {timeout:g}: a send may be on its way for {in_flight:g} s "
                    "(connect and read timeouts, plus dispatch.lookup_settle_seconds), and the lease must outlive it "
                    "by at least 1 s; raise the lease or lower the timeout"
                )
        if self.twilio_configured and not self.twilio.from_number:
            raise ValueError("twilio.from_number: required when Twilio credentials are set")
        if (self.twilio_configured or self.sendgrid_configured) and not self.oncall_configured:
            # Patients who report a red flag are told the clinic has been alerted: with real providers someone must be.
            raise ValueError(
                "clinic.oncall_sms / clinic.oncall_email: at least one on-call contact is required once Twilio or "
                "SendGrid is configured (FOLLOWUP_CLINIC__ONCALL_SMS='[\"+1...\"]' or FOLLOWUP_CLINIC__ONCALL_EMAIL)"
            )
        return self

    @property
    def texting_regions(self) -> list[str]:
        """The regions whose numbers may be texted: contacts.allowed_regions, else the clinic's own."""
        return self.contacts.allowed_regions or [self.clinic.default_region]

    @property
    def outbox_mode(self) -> bool:
        """No real provider: messages go to the outbox files and the patient-phone demo exists."""
        return not self.twilio_configured and not self.sendgrid_configured and self.security.environment != "production"

    @property
    def oncall_configured(self) -> bool:
        return bool(self.clinic.oncall_sms or self.clinic.oncall_email)

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio.account_sid and self.twilio.auth_token)

    @property
    def sendgrid_configured(self) -> bool:
        return bool(self.sendgrid.api_key)

    def with_overrides(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some keys replaced, validated again (tests and the CLI use it)."""
        data = self.model_dump()
        if self.server.public_url_derived:
            data["server"]["public_url"] = ""  # keeps following host and port
        for section, values in sections.items():
            data[section] = {**data[section], **values}
        return Settings.model_validate(data)


MIN_SECRET = 32
MIN_SECRET_BITS = 80
PLACEHOLDERS = ("changeme", "changethis", "password", "secret", "example", "placeholder", "default")


def secret_problem(value: str) -> str | None:
    """What makes `value` a weak secret, or None. A rough estimate, tuned so that `openssl rand -hex 32`,
    `-hex 16` and `secrets.token_urlsafe(32)` always pass (checked over 200,000 draws each), while short values,
    placeholders, repeats ("aaaa...", "abcabc...") and runs ("abcdef...", "123456...") are refused."""
    if len(value) < MIN_SECRET:
        return f"{len(value)} characters, at least {MIN_SECRET} are needed"
    lowered = value.lower()
    for word in PLACEHOLDERS:
        if word in lowered:
            return f"it looks like a placeholder (it contains {word!r})"
    if any(all(value[i] == value[i + p] for i in range(len(value) - p)) for p in range(1, len(value) // 2 + 1)):
        return "it repeats a pattern"
    neighbours = sum(1 for a, b in itertools.pairwise(value) if abs(ord(a) - ord(b)) <= 1)
    if neighbours / (len(value) - 1) >= 0.75:
        return "it is a run of neighbouring characters (like aaaa, abcd or 1234)"
    counts = Counter(value).values()
    bits = -sum(n * math.log2(n / len(value)) for n in counts)  # empirical entropy of the whole string
    if bits < MIN_SECRET_BITS or len(counts) < 8:
        return f"too little entropy (about {bits:.0f} bits estimated, at least {MIN_SECRET_BITS})"
    return None


def check_timezone(name: str) -> str:
    """Return `name` if it is an IANA zone this machine knows, else raise ValueError."""
    if not name or ("/" not in name and name != "UTC"):
        raise ValueError(f"{name!r} is not an IANA time zone such as America/Los_Angeles")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone such as America/Los_Angeles") from exc
    return name


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file, overlay FOLLOWUP_* variables, validate; raise SettingsError naming the bad key."""
    environ = os.environ if environ is None else environ
    path = path or Path(environ.get("FOLLOWUP_SETTINGS", "settings.toml"))
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
    for section, key in SECRETS:
        if key in data.get(section, {}) and data[section][key]:
            raise SettingsError(
                f"{section}.{key}: secrets come only from the environment; remove it from {path} "
                f"and set {ENV_PREFIX}{section.upper()}__{key.upper()}"
            )
    for endpoint in data.get("webhooks", {}).get("endpoints", []) or []:
        if isinstance(endpoint, dict) and endpoint.get("secret"):
            raise SettingsError(
                f"webhooks.endpoints.secret: secrets come only from the environment; remove it from {path} and "
                f"set {webhook_secret_env(str(endpoint.get('name', '')))}"
            )
    known = Settings.model_fields
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if section not in known:
            if section in {"test", "fake"}:
                continue
            raise SettingsError(f"{name}: unknown section {section!r} (known: {', '.join(known)})")
        data.setdefault(section, {})[key] = _env_value(value)
    for endpoint in data.get("webhooks", {}).get("endpoints", []) or []:
        if isinstance(endpoint, dict) and not endpoint.get("secret"):
            endpoint["secret"] = environ.get(webhook_secret_env(str(endpoint.get("name", ""))), "")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from exc


def _env_value(raw: str) -> Any:
    text = raw.strip()
    if text.startswith("[") or text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return raw
    return raw


def describe(exc: ValidationError) -> str:
    """One line per problem: `section.key: what is wrong (environment variable)`."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "settings"
        env = ENV_PREFIX + "__".join(p.upper() for p in loc[:2]) if len(loc) >= 2 else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against settings.toml)"
        lines.append(f"{key}: {msg}" + (f" (settings.toml or {env})" if env else ""))
    return "invalid settings:\n  " + "\n  ".join(lines)
