"""The patient-facing intake page: a form with a CSRF token; a POST without it is refused and writes nothing; a valid
one enrolls the patient; a wrong field is shown next to the field. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest
from factories import intake_form
from fastapi.testclient import TestClient
from sqlmodel import func, select

from followup import models as m
from followup.runtime import Runtime
from followup.web.csrf import COOKIE

TABLES = (m.Patient, m.Triage, m.Consent, m.Message, m.AuditLog)


def counts(rt: Runtime) -> dict[str, int]:
    with rt.db.session() as s:
        return {t.__name__: s.exec(select(func.count()).select_from(t)).one() for t in TABLES}


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the form carries no CSRF token"
    return match.group(1)


def form(**over: str | list[str] | None) -> dict[str, str | list[str]]:
    """A complete, valid intake form as a phone's browser posts it; a value of None leaves the field out."""
    return intake_form(**over)


@pytest.fixture
def page(client: TestClient) -> str:
    """GET the form (which sets the CSRF cookie on the client) and return its token."""
    r = client.get("/intake")
    assert r.status_code == 200
    return csrf_token(r.text)


def test_form_renders_with_a_csrf_token_and_cookie(client: TestClient) -> None:
    """GET /intake shows the questions, a hidden signed token, and sets the matching HttpOnly, SameSite cookie."""
    r = client.get("/intake")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert csrf_token(r.text)
    assert COOKIE in client.cookies
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    for text in ('name="phone"', 'name="consent"', 'name="weakness"', "America/Los Angeles", "911"):
        assert text in r.text


@pytest.mark.parametrize(
    "case",
    ["no-token", "forged-token", "token-without-cookie", "token-for-another-cookie"],
)
def test_post_without_a_valid_token_is_403_and_writes_nothing(
    client: TestClient, rt: Runtime, page: str, case: str
) -> None:
    """Without the token that matches the browser's cookie the form is refused (403) and nothing is stored."""
    data = form()
    if case == "forged-token":
        data["csrf_token"] = page[:-4] + "AAAA"
    elif case in ("token-without-cookie", "token-for-another-cookie"):
        data["csrf_token"] = page
        client.cookies.clear()
        if case == "token-for-another-cookie":
            client.cookies.set(COOKIE, "someone-elses-cookie")
    before = counts(rt)
    r = client.post("/intake", data=data)
    assert r.status_code == 403
    assert "This form expired" in r.text and 'value="Ana Diaz"' in r.text  # answers kept for a retry
    assert counts(rt) == before


def test_valid_post_enrolls_the_patient(client: TestClient, rt: Runtime, page: str) -> None:
    """A valid form answers 201 with the thank-you page and enrolls the patient by SMS, with consent recorded."""
    r = client.post("/intake", data={**form(), "csrf_token": page})
    assert r.status_code == 201, r.text
    assert "You're all set" in r.text or "You&#39;re all set" in r.text
    with rt.db.session() as s:
        (p,) = s.exec(select(m.Patient)).all()
        (t,) = s.exec(select(m.Triage)).all()
        consents = s.exec(select(m.Consent)).all()
        steps = {x.step_id for x in s.exec(select(m.Message)).all()}
    assert (p.phone, p.email, p.channel, p.status) == ("+13105550142", "ana@example.org", "sms", "active")
    assert (t.source, t.disposition, t.answers["caffeine_per_day"], t.answers["alcohol_per_week"]) == (
        "intake",
        "enrolled",
        4,
        0,
    )
    assert {c.source for c in consents} == {"intake"} and all("STOP" in c.text for c in consents)
    assert {"welcome", "caffeine", "sleep", "hydration", "stress"} <= steps


@pytest.mark.parametrize(
    ("over", "field", "words"),
    [
        ({"phone": "12345"}, "phone", "phone number"),
        ({"phone": "", "channel": "sms"}, "phone", "no mobile number"),
        ({"email": "ana@", "channel": "email"}, "email", "email address"),
        ({"consent": None}, "consent", "agree"),
        ({"weakness": None}, "weakness", "Please answer yes or no."),
        ({"sleep_hours": ""}, "sleep_hours", "Please enter a number."),
        ({"stress": "11"}, "stress", "10"),
        ({"timezone": "Mars/Base"}, "timezone", "IANA time zone"),
    ],
    ids=[
        "bad-phone",
        "sms-without-phone",
        "bad-email",
        "no-consent",
        "unanswered",
        "empty-number",
        "out-of-range",
        "zone",
    ],
)
def test_invalid_field_is_422_shown_at_the_field_and_writes_nothing(
    client: TestClient, rt: Runtime, page: str, over: dict, field: str, words: str
) -> None:
    """A wrong answer re-renders the form with 422, the error next to that field, and nothing stored."""
    before = counts(rt)
    r = client.post("/intake", data={**form(**over), "csrf_token": page})
    assert r.status_code == 422
    match = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', r.text)
    assert match, f"no error shown at {field}"
    assert words in match.group(1)
    assert counts(rt) == before
    assert csrf_token(r.text)  # the re-rendered form can be sent again


def test_red_flag_on_the_form_shows_the_clinic_will_call(client: TestClient, rt: Runtime, page: str) -> None:
    """Weakness ticked on the form: 201 with the "the clinic wants to see you" page, an escalation, no tips."""
    r = client.post("/intake", data={**form(weakness="yes"), "csrf_token": page})
    assert r.status_code == 201 and "The clinic wants to see you" in r.text and "911" in r.text
    with rt.db.session() as s:
        (esc,) = s.exec(select(m.Escalation)).all()
        kinds = {x.kind for x in s.exec(select(m.Message)).all()}
    assert esc.source == "triage" and kinds == {"escalation", "alert"}
