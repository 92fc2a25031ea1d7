"""Inbound Parse credentials cannot be guessed at speed: failures from one address are counted (ten free, then
waits that double up to five minutes), audited by a keyed hash of the address, and answered 503 with Retry-After
while a wait runs, so that SendGrid, whose address an attacker might share, retries instead of dropping mail.
SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from signed import INBOUND_PASSWORD, email_auth, email_fields, webhook_settings
from sqlmodel import select

from followup.clock import FakeClock
from followup.models import AuditLog, Inbound
from followup.runtime import Runtime, build_runtime
from followup.transports.recording import RecordingTransport
from followup.web.app import create_app

ATTACKER, SENDGRID = "203.0.113.66", "149.72.0.10"


@pytest.fixture
def rt(db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]) -> Iterator[Runtime]:
    runtime = build_runtime(webhook_settings(db_url), clock=clock, transports=dict(transports))
    yield runtime
    runtime.db.dispose()


def post(rt: Runtime, address: str, password: str, message_id: str = "<m1@example.org>") -> Any:
    c = TestClient(create_app(runtime=rt, background=False), client=(address, 40000))
    fields = email_fields("ana@example.org", "hello", message_id)
    return c.post("/webhooks/sendgrid/inbound", data=fields, headers=email_auth(password))


def test_guessing_the_inbound_password_is_slowed_and_audited(rt: Runtime, clock: FakeClock) -> None:
    """200 wrong passwords in a row: ten are checked at once, the rest wait (503, Retry-After) without being
    checked, even the right password from that address; one audit row per checked failure, none naming the
    address. Another address (SendGrid's) is not affected, and the attacker's address is checked again once its
    wait has passed."""
    statuses = [post(rt, ATTACKER, f"guess-{i}").status_code for i in range(200)]
    assert statuses == [401] * 10 + [503] * 190
    waiting = post(rt, ATTACKER, INBOUND_PASSWORD)
    assert waiting.status_code == 503 and int(waiting.headers["retry-after"]) >= 1
    with rt.db.session() as s:
        assert s.exec(select(Inbound)).all() == []
        failures = s.exec(select(AuditLog).where(AuditLog.action == "webhooks.inbound_auth_failed")).all()
    assert len(failures) == 10 and len({f.subject for f in failures}) == 1
    assert all(ATTACKER not in f.subject and ATTACKER not in str(f.detail) for f in failures)
    assert post(rt, SENDGRID, INBOUND_PASSWORD).status_code == 200
    clock.advance(timedelta(seconds=int(waiting.headers["retry-after"])))
    assert post(rt, ATTACKER, INBOUND_PASSWORD, "<m2@example.org>").status_code == 200


def test_waits_grow_and_stop_at_five_minutes(rt: Runtime, clock: FakeClock) -> None:
    """Trying again as soon as allowed, the waits double and never pass five minutes."""
    waits: list[int] = []
    for i in range(40):
        r = post(rt, ATTACKER, f"guess-{i}")
        if r.status_code == 503:
            waits.append(int(r.headers["retry-after"]))
            clock.advance(timedelta(seconds=waits[-1]))
    assert waits[:4] == [1, 2, 4, 8] and max(waits) == 300 and waits == sorted(waits)


@pytest.mark.parametrize(
    "header",
    ["", "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"sendgrid").decode(), "Basic " + "A" * 5000],
    ids=["none", "bearer", "not-base64", "no-colon", "huge"],
)
def test_malformed_credentials_count_as_failures(rt: Runtime, header: str) -> None:
    """Whatever the Authorization header holds, a failure is a 401 that counts; none is a 5xx."""
    c = TestClient(create_app(runtime=rt, background=False), client=(ATTACKER, 40000))
    headers = {"Authorization": header} if header else {}
    r = c.post("/webhooks/sendgrid/inbound", data=email_fields("a@example.org", "x", "<m@x>"), headers=headers)
    assert r.status_code == 401
    with rt.db.session() as s:
        assert len(s.exec(select(AuditLog).where(AuditLog.action == "webhooks.inbound_auth_failed")).all()) == 1
