"""Settings: defaults, FOLLOWUP_<SECTION>__<KEY> overrides, secrets only from the environment, errors naming the key.

Every test builds its settings with `load_settings(path, environ)` from a temporary file and a plain dict: the real
environment is never read.
"""

from __future__ import annotations

import secrets
from datetime import time, timedelta
from pathlib import Path

import pytest

from followup.settings import SECRETS, Settings, SettingsError, load_settings, secret_problem

ROOT = Path(__file__).resolve().parent.parent

STRONG = "9c1f4e7a2b8d5c03e6f1a9b4d7c2e5f8a3b6c9d0e1f2a7b4c5d8e9f0a1b2c3d4"  # `openssl rand -hex 32`-like
PRODUCTION = {
    "FOLLOWUP_SECURITY__ENVIRONMENT": "production",
    "FOLLOWUP_SERVER__PUBLIC_URL": "https://followup.clinic.example",
    "FOLLOWUP_SECURITY__SECRET_KEY": STRONG,
}
WEAK = {
    "one character": ("x", "at least 32"),
    "32 times a": ("a" * 32, "repeats a pattern"),
    "a short phrase repeated": ("clinic42" * 5, "repeats a pattern"),
    "a run of neighbours": ("abcdefghijklmnopqrstuvwxyz0123456789", "neighbouring characters"),
    "a placeholder": ("changeme-" + STRONG[:30], "placeholder"),
    "four letters shuffled": ("cegagecgcgacaeaegceacgcegegegceaecea", "too little entropy"),
}


@pytest.fixture
def toml(tmp_path: Path):
    """Write a settings file and return its path."""

    def write(text: str = "") -> Path:
        path = tmp_path / "settings.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def test_defaults_load_without_a_file_or_variables(tmp_path: Path) -> None:
    """With no file and no variables the defaults load and form a working development configuration."""
    s = load_settings(tmp_path / "missing.toml", {})
    assert s == Settings()
    assert s.security.environment == "development"
    assert (s.schedule.send_from, s.schedule.send_until) == (time(9, 0), time(20, 0))
    assert s.schedule.ttl_tip == timedelta(hours=24)
    assert not s.twilio_configured and not s.sendgrid_configured


def test_shipped_settings_file_states_the_defaults() -> None:
    """The commented settings.toml in the repository loads and says exactly what the code defaults to."""
    assert load_settings(ROOT / "settings.toml", {}) == Settings()


@pytest.mark.parametrize(
    ("name", "value", "read", "expected"),
    [
        ("FOLLOWUP_SERVER__PORT", "9001", lambda s: s.server.port, 9001),
        ("FOLLOWUP_DISPATCH__ENABLED", "false", lambda s: s.dispatch.enabled, False),
        ("FOLLOWUP_SCHEDULE__TTL_TIP", "PT12H", lambda s: s.schedule.ttl_tip, timedelta(hours=12)),
        ("FOLLOWUP_SCHEDULE__SEND_FROM", "08:30", lambda s: s.schedule.send_from, time(8, 30)),
        (
            "FOLLOWUP_CLINIC__ONCALL_SMS",
            '["+13105550199", "(310) 555-0198"]',
            lambda s: s.clinic.oncall_sms,
            ["+13105550199", "+13105550198"],
        ),
        (
            "FOLLOWUP_CLINIC__ONCALL_EMAIL",
            '["OnCall@Clinic.example"]',
            lambda s: s.clinic.oncall_email,
            ["oncall@clinic.example"],
        ),
        (
            "FOLLOWUP_DATABASE__URL",
            "postgresql://u@db:5432/followup",
            lambda s: s.database.url,
            "postgresql+psycopg://u@db:5432/followup",
        ),
        ("FOLLOWUP_SERVER__PUBLIC_URL", "https://f.example/", lambda s: s.server.public_url, "https://f.example"),
    ],
    ids=["int", "bool", "duration", "time", "json-list-phones-e164", "json-list-emails", "pg-url", "url-slash"],
)
def test_environment_overrides_a_key(tmp_path: Path, name: str, value: str, read, expected) -> None:
    """FOLLOWUP_<SECTION>__<KEY> sets that key, parsed to its type (lists as JSON, phones to E.164)."""
    s = load_settings(tmp_path / "missing.toml", {name: value})
    assert read(s) == expected


def test_environment_wins_over_the_file(toml) -> None:
    """A variable overrides the same key in the file; other keys of the file stay."""
    path = toml('[server]\nport = 8001\nhost = "10.0.0.5"\n')
    s = load_settings(path, {"FOLLOWUP_SERVER__PORT": "9002"})
    assert (s.server.port, s.server.host) == (9002, "10.0.0.5")


def test_unrelated_variables_are_ignored(tmp_path: Path) -> None:
    """Variables without our prefix, or without a section, do not disturb loading."""
    env = {"PATH": "/usr/bin", "FOLLOWUP_SETTINGS": "elsewhere.toml", "HOME": "/root"}
    assert load_settings(tmp_path / "missing.toml", env) == Settings()


def test_secrets_from_the_environment_are_accepted(tmp_path: Path) -> None:
    """Twilio and SendGrid credentials given as variables configure the real providers."""
    env = {
        "FOLLOWUP_TWILIO__ACCOUNT_SID": "AC123",
        "FOLLOWUP_TWILIO__AUTH_TOKEN": "tok",
        "FOLLOWUP_TWILIO__FROM_NUMBER": "+13105550100",
        "FOLLOWUP_SENDGRID__API_KEY": "SG.key",
        "FOLLOWUP_CLINIC__ONCALL_EMAIL": '["oncall@clinic.example"]',
    }
    s = load_settings(tmp_path / "missing.toml", env)
    assert s.twilio_configured and s.sendgrid_configured
    assert s.twilio.auth_token == "tok"


@pytest.mark.parametrize(("section", "key"), sorted(SECRETS), ids=[f"{s}.{k}" for s, k in sorted(SECRETS)])
def test_a_secret_in_the_file_is_refused(toml, section: str, key: str) -> None:
    """A secret written in the TOML file stops loading with the key and the variable to use instead."""
    path = toml(f'[{section}]\n{key} = "s3cr3t-value-from-file"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path, {})
    msg = str(info.value)
    assert f"{section}.{key}" in msg
    assert f"FOLLOWUP_{section.upper()}__{key.upper()}" in msg
    assert "s3cr3t-value-from-file" not in msg  # the secret itself is never echoed


@pytest.mark.parametrize(
    ("file_text", "env", "names"),
    [
        ("", {"FOLLOWUP_CLINIC__TIMEZONE": "Mars/Olympus_Mons"}, "clinic.timezone"),
        ('[clinic]\ntimezone = "PST"\n', {}, "clinic.timezone"),
        ("", {"FOLLOWUP_SERVER__PUBLIC_URL": "followup.clinic.example"}, "server.public_url"),
        ('[server]\npublic_url = "ftp://clinic.example"\n', {}, "server.public_url"),
        ("[server]\nprot = 8000\n", {}, "server.prot"),
        ("", {"FOLLOWUP_DISPATCH__BATCHSIZE": "5"}, "dispatch.batchsize"),
        ("", {"FOLLOWUP_NOPE__KEY": "1"}, "FOLLOWUP_NOPE__KEY"),
        ("", {"FOLLOWUP_CLINIC__ONCALL_SMS": '["call me maybe"]'}, "clinic.oncall_sms"),
        ("", {"FOLLOWUP_CLINIC__ONCALL_SMS": '["+1 310 555 01"]'}, "clinic.oncall_sms"),
        ('[clinic]\noncall_email = ["not-an-address"]\n', {}, "clinic.oncall_email"),
        ("", {"FOLLOWUP_SECURITY__ENVIRONMENT": "production"}, "security.secret_key"),
        (
            '[server]\npublic_url = "http://clinic.example"\n[security]\nenvironment = "production"\n',
            {"FOLLOWUP_SECURITY__SECRET_KEY": STRONG},
            "server.public_url",
        ),
        ("", {"FOLLOWUP_SERVER__PORT": "eighty"}, "server.port"),
        ('[twilio]\nmessaging_service_sid = "PN123"\n', {}, "twilio.messaging_service_sid"),
        ('[schedule]\nsend_from = "21:00"\nsend_until = "08:00"\n', {}, "send_from"),
        (
            "",
            {"FOLLOWUP_TWILIO__ACCOUNT_SID": "AC1", "FOLLOWUP_TWILIO__AUTH_TOKEN": "t"},
            "twilio.from_number",
        ),
        ("[server\nport = 1\n", {}, "not valid TOML"),
        ("[dispatch]\nlease_seconds = 20\n", {}, "dispatch.lease_seconds"),
        ("", {"FOLLOWUP_DISPATCH__LEASE_SECONDS": "8", "FOLLOWUP_TWILIO__TIMEOUT_SECONDS": "4"}, "twilio.timeout"),
    ],
    ids=[
        "unknown-zone-env",
        "abbreviation-zone-file",
        "url-without-scheme",
        "url-ftp",
        "unknown-key-file",
        "unknown-key-env",
        "unknown-section-env",
        "oncall-sms-not-a-number",
        "oncall-sms-too-short",
        "oncall-email",
        "production-without-secret",
        "production-http-url",
        "port-not-int",
        "messaging-service-not-mg",
        "window-reversed",
        "twilio-without-from",
        "broken-toml",
        "lease-shorter-than-a-sendgrid-call",
        "lease-shorter-than-a-twilio-call",
    ],
)
def test_bad_values_raise_settings_error_naming_the_key(toml, file_text: str, env: dict, names: str) -> None:
    """A wrong value stops loading with a SettingsError whose message names the key at fault."""
    with pytest.raises(SettingsError) as info:
        load_settings(toml(file_text), env)
    assert names in str(info.value)


@pytest.mark.parametrize("setting", ["security.secret_key", "sendgrid.inbound_password"])
@pytest.mark.parametrize(("value", "why"), list(WEAK.values()), ids=list(WEAK))
def test_weak_secrets_are_refused_in_production_naming_the_setting(
    tmp_path: Path, setting: str, value: str, why: str
) -> None:
    """In production a secret we choose (the secret key, the Inbound Parse password) that is short, a placeholder,
    a repeat, a run or low in entropy stops loading, naming the setting and its variable (never the value)."""
    section, key = setting.split(".")
    variable = f"FOLLOWUP_{section.upper()}__{key.upper()}"
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path / "missing.toml", {**PRODUCTION, variable: value})
    msg = str(info.value)
    assert setting in msg and variable in msg and why in msg
    assert len(value) < 4 or value not in msg  # the secret itself is never echoed


@pytest.mark.parametrize("value", ["x", "a" * 32])
def test_weak_secrets_are_accepted_in_development(tmp_path: Path, value: str) -> None:
    """Development keeps working with whatever a laptop has: the strength rule is for production."""
    env = {"FOLLOWUP_SECURITY__SECRET_KEY": value, "FOLLOWUP_SENDGRID__INBOUND_PASSWORD": value}
    assert load_settings(tmp_path / "missing.toml", env).security.secret_key == value


def test_generated_secrets_pass_in_production(tmp_path: Path) -> None:
    """What the README tells operators to generate (`openssl rand -hex 32`, Python's token_urlsafe) is accepted."""
    for _ in range(2000):
        for value in (secrets.token_hex(32), secrets.token_hex(16), secrets.token_urlsafe(32)):
            assert secret_problem(value) is None, value
    env = {**PRODUCTION, "FOLLOWUP_SENDGRID__INBOUND_PASSWORD": secrets.token_hex(32)}
    assert load_settings(tmp_path / "missing.toml", env).security.environment == "production"


def test_with_overrides_validates_again() -> None:
    """Overriding keys in code goes through the same validation as loading."""
    with pytest.raises(ValueError, match="timezone"):
        Settings().with_overrides(clinic={"timezone": "Nowhere/Land"})
    assert Settings().with_overrides(dispatch={"batch_size": 7}).dispatch.batch_size == 7
