"""Running it as a new clinic would (issue 12): the public URL follows the port served, a busy port is one line
naming what to change, real providers need an on-call contact, the README and example files work as written, the
install prints no deprecation warnings, and `followup simulate` says what each counter means."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import ROOT, make_settings

from followup.cli.main import cli
from followup.cli.serve import banner, served_settings
from followup.cli.simulate import INVARIANT_MEANING, format_summary
from followup.content.links import Links
from followup.settings import Settings, SettingsError, load_settings
from followup.simulator import INVARIANTS

REAL_PROVIDERS = {
    "FOLLOWUP_TWILIO__ACCOUNT_SID": "AC123",
    "FOLLOWUP_TWILIO__AUTH_TOKEN": "tok",
    "FOLLOWUP_TWILIO__FROM_NUMBER": "+13105550100",
}


@pytest.mark.parametrize(
    ("server", "host", "port", "expected"),
    [
        ({}, None, None, "http://127.0.0.1:8000"),
        ({}, None, 8001, "http://127.0.0.1:8001"),
        ({"port": 9000}, None, None, "http://127.0.0.1:9000"),
        ({}, "0.0.0.0", 8002, "http://127.0.0.1:8002"),  # noqa: S104
        ({}, "::1", 8003, "http://[::1]:8003"),
        ({"public_url": "https://followup.clinic.example/"}, None, 8001, "https://followup.clinic.example"),
    ],
    ids=["default", "--port", "server.port", "all-interfaces", "ipv6", "explicit-url-stays"],
)
def test_public_url_follows_the_address_served_unless_set(
    server: dict[str, Any], host: str | None, port: int | None, expected: str
) -> None:
    """Booking links and webhook signatures use the host and port served, unless server.public_url is set."""
    settings = served_settings(Settings().with_overrides(server=server) if server else Settings(), host, port)
    assert settings.server.public_url == expected
    assert Links(settings, "k" * 32).booking(7, "n0nce").startswith(expected + "/book/")


def test_shipped_settings_leave_the_public_url_to_follow_the_port() -> None:
    """settings.toml does not pin 8000: a second instance with FOLLOWUP_SERVER__PORT=8001 links to 8001."""
    s = load_settings(ROOT / "settings.toml", {"FOLLOWUP_SERVER__PORT": "8001"})
    assert s.server.public_url == "http://127.0.0.1:8001"


@pytest.fixture
def busy_port() -> Any:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_busy_port_is_one_line_naming_the_option_and_the_setting(busy_port: int, tmp_path: Path) -> None:
    """`serve` on a port in use exits 1 with one line naming --port and server.port, and prints no URL banner."""
    result = CliRunner().invoke(
        cli,
        ["--settings", str(ROOT / "settings.toml"), "serve", "--port", str(busy_port), "--no-migrate"],
        obj={},
        env={"FOLLOWUP_DATABASE__URL": f"sqlite:///{tmp_path}/x.db"},
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"port {busy_port}" in lines[0] and "--port" in lines[0] and "server.port" in lines[0]
    assert "intake page" not in result.output and "Errno" not in result.output


@pytest.mark.parametrize(
    ("env", "ok"),
    [
        (REAL_PROVIDERS, False),
        ({"FOLLOWUP_SENDGRID__API_KEY": "SG.key"}, False),
        ({**REAL_PROVIDERS, "FOLLOWUP_CLINIC__ONCALL_SMS": '["+13105550199"]'}, True),
        ({"FOLLOWUP_SENDGRID__API_KEY": "SG.key", "FOLLOWUP_CLINIC__ONCALL_EMAIL": '["oncall@clinic.example"]'}, True),
        ({}, True),  # the outbox: a laptop demo may run without one (the banner warns)
    ],
    ids=["twilio-alone", "sendgrid-alone", "twilio-with-sms", "sendgrid-with-email", "outbox"],
)
def test_real_providers_need_an_on_call_contact(tmp_path: Path, env: dict[str, str], ok: bool) -> None:
    """With Twilio or SendGrid configured, settings without an on-call contact are refused, naming the keys."""
    if ok:
        assert load_settings(tmp_path / "none.toml", env).oncall_configured is bool(len(env) > 1)
        return
    with pytest.raises(SettingsError, match=r"clinic\.oncall_sms / clinic\.oncall_email: at least one on-call"):
        load_settings(tmp_path / "none.toml", env)


@pytest.mark.parametrize(
    ("clinic", "says", "warns"),
    [
        ({"oncall_sms": [], "oncall_email": []}, "no on-call contact", True),
        ({"oncall_sms": ["+13105550199"], "oncall_email": []}, "escalations alert 1 by SMS", False),
        (
            {"oncall_sms": ["+13105550199"], "oncall_email": ["a@clinic.example", "b@clinic.example"]},
            "1 by SMS and 2 by email",
            False,
        ),
    ],
)
def test_start_banner_says_who_escalations_alert(clinic: dict[str, Any], says: str, warns: bool) -> None:
    """The start banner says who is alerted, or warns on stderr that nobody is."""
    lines = banner(make_settings("sqlite:///unused.db", clinic=clinic))
    (line,) = [(text, err) for text, err in lines if says in text]
    assert line[1] is warns


def test_readme_sets_token_before_using_it() -> None:
    """Every `$TOKEN` in the README comes after a line that sets TOKEN."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_use = text.index("$TOKEN")
    assert re.search(r"^TOKEN=\$\(\.venv/bin/followup token create\)", text[:first_use], re.M)


def test_example_triage_is_a_different_person_from_the_intake_example(client: Any, auth: dict[str, str]) -> None:
    """docs/example-triage.json is accepted by the API and shares no name, number or email with the form's example."""
    example = json.loads((ROOT / "docs/example-triage.json").read_text(encoding="utf-8"))
    form = (ROOT / "followup/web/pages/intake.html").read_text(encoding="utf-8")
    digits = re.sub(r"\D", "", example["phone"])
    assert digits not in re.sub(r"\D", "", form) and example["email"] not in form and example["name"] not in form
    r = client.post("/api/triage", json=example, headers=auth)
    assert r.status_code == 201, r.text


def test_pyproject_license_is_an_spdx_expression() -> None:
    """The license is a plain SPDX string (the TOML table form makes setuptools print a deprecation warning)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "Apache-2.0"
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])


def test_editable_install_prints_no_warning(tmp_path: Path) -> None:
    """Building and installing the project as `make install` does (editable) prints no warning from the build.
    It installs into a throwaway environment: pip would otherwise replace this one's own installation."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)  # noqa: S603
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    result = subprocess.run(  # noqa: S603 (our own interpreter and arguments)
        [*pip, "install", "--quiet", "--no-deps", "-e", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # This machine's pip configuration names find-links folders that may not exist; that is not the project's.
    ours = [ln for ln in result.stderr.splitlines() if not ln.startswith("WARNING: Location '")]
    assert not [ln for ln in ours if "warning" in ln.lower()], "\n".join(ours)


def test_simulate_summary_explains_each_counter() -> None:
    """Every counter in the text summary carries a word on what it counts, benign escalations with their criteria."""
    summary = {
        "patients": 60,
        "days": 30,
        "seed": 1,
        "start": "s",
        "end": "e",
        "wall_seconds": 1.0,
        "peak_rss_mb": 100,
        "messages_sent": 809,
        "messages_by_channel_and_kind": {"sms": {"tip": 268}},
        "message_status": {"delivered": 804, "scheduled": 233, "expired": 7},
        "closed_reasons": {"expired: held while an escalation is open": 7},
        "replies": {"benign": 80, "red_flag": 8},
        "escalations": 24,
        "escalations_by_tier": {"routine": 20, "urgent": 4},
        "escalations_by_source": {"reply": 24},
        "benign_replies_escalated": 16,
        "benign_replies_escalated_by_criterion": {"persisting": 16},
        "criteria_labels": {"persisting": "Twitching persisting for weeks without improvement"},
        "examples": [],
        **dict.fromkeys(INVARIANTS, 0),
    }
    text = format_summary(summary)
    assert "benign replies escalated: 16 (replies written as benign that the detector escalated" in text
    assert "16 Twitching persisting for weeks without improvement (persisting)" in text
    assert "scheduled       233  due after the simulated end" in text
    for k in INVARIANTS:
        assert re.search(rf"{k}\s+0  {re.escape(INVARIANT_MEANING[k])}", text)
