"""Access control, walked over every route the app has: only a short public allow-list answers a stranger; the API
wants a live token (stored hashed, listed and revoked from the CLI), staff pages a session of the right role,
webhooks a valid signature, the booking page a valid link. SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import ROOT
from factories import triage_body
from fastapi import FastAPI
from fastapi.testclient import TestClient
from signed import event_headers, webhook_settings
from sqlmodel import select

from followup import models as m
from followup.cli.main import cli
from followup.clock import FakeClock
from followup.runtime import Runtime, build_runtime
from followup.services import booking as booking_svc
from followup.services.staff import add_staff, start_session
from followup.transports.recording import RecordingTransport
from followup.web.app import create_app
from followup.web.deps import require_token
from followup.web.staffauth import SESSION_COOKIE, current_staff, require_admin

NAME, PHONE = "Ana Diaz", "+13105550142"
PRODUCTION_KEY = "5f0c9e2a7b61d4839a0e3c5b7d2f8e1a6c4b9d0e2f7a3c1b8e5d6f0a9c2b4e7d"  # strong enough for production
# Every route a stranger may use, and why. Anything else must refuse, and a new route fails this test until it is
# put in a class below.
PUBLIC = {
    ("GET", "/"): "redirects to the intake page",
    ("GET", "/healthz"): "liveness for the load balancer: says ok or unhealthy, nothing else",
    ("GET", "/intake"): "the patient intake form",
    ("POST", "/intake"): "the intake form itself (CSRF token, per-address rate limit)",
    ("GET", "/login"): "staff sign-in page",
    ("POST", "/login"): "staff sign-in (CSRF token, back-off per address and account, bounded hashing)",
    ("POST", "/login/code"): "second-factor code, only after a right password (signed five-minute cookie)",
    ("GET", "/static/{name}"): "the pages' own static scripts, by name from a fixed list",
    ("POST", "/logout"): "ending a session only ever makes things safer",
    # The schema describes routes, each of which checks its caller; the interactive pages run CDN scripts on this
    # origin and exist only in development (test_docs_pages_are_off_in_production).
    ("GET", "/openapi.json"): "API schema, for integrators and schemathesis",
    ("GET", "/docs"): "Swagger UI, development only",
    ("GET", "/docs/oauth2-redirect"): "Swagger UI helper, development only",
    ("GET", "/redoc"): "ReDoc, development only",
}
WEBHOOKS = {
    "/webhooks/twilio/sms",
    "/webhooks/twilio/status",
    "/webhooks/sendgrid/events",
    "/webhooks/sendgrid/inbound",
}
BOOKING = re.compile(r"^/(book|confirm)/\{token\}")  # secret links: a booking, an email confirmation
VALUES = {
    "patient_id": "{pid}",
    "escalation_id": "{eid}",
    "token": "not-a-valid.booking-token",
    "staff_id": "1",
    "name": "live-queue.js",
}
ACTIONS = {"/api/patients/": "pause", "/api/escalations/": "acknowledge"}


def every_route(app: FastAPI) -> list[tuple[str, str, Any]]:
    """(method, path, route) for every endpoint, included routers flattened (FastAPI 0.16x keeps them lazy)."""
    out: list[tuple[str, str, Any]] = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if hasattr(route, "effective_route_contexts"):
                walk(list(route.effective_route_contexts()))
                continue
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                out.append((method, route.path, route))

    walk(list(app.routes))
    return sorted(out, key=lambda r: (r[1], r[0]))


def guards(route: Any) -> set[str]:
    """The authentication dependencies a route declares, anywhere in its dependency tree."""
    found: set[str] = set()
    stack = [getattr(route, "dependant", None)]
    while stack:
        dep = stack.pop()
        if dep is None:
            continue
        for fn, name in ((require_token, "token"), (current_staff, "staff"), (require_admin, "admin")):
            if dep.call is fn:
                found.add(name)
        stack.extend(dep.dependencies)
    return found


def concrete(path: str, ids: dict[str, int]) -> str:
    url = path
    for prefix, action in ACTIONS.items():
        if url.startswith(prefix):
            url = url.replace("{action}", action)
    for name, value in VALUES.items():
        url = url.replace("{" + name + "}", value.format(pid=ids["pid"], eid=ids["eid"]))
    assert "{" not in url, f"no test value for a parameter of {path}: add one to VALUES"
    return url


@pytest.fixture
def rt(db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]) -> Iterator[Runtime]:
    runtime = build_runtime(webhook_settings(db_url), clock=clock, transports=dict(transports))
    yield runtime
    runtime.db.dispose()


@pytest.fixture
def seeded(client: TestClient, auth: dict[str, str]) -> dict[str, int]:
    """A patient with an open escalation, so a leak would have something to leak."""
    r = client.post("/api/triage", json=triage_body(name=NAME, answers={"weakness": True}), headers=auth)
    assert r.status_code == 201, r.text
    return {"pid": r.json()["patient_id"], "eid": r.json()["escalation_id"]}


def test_every_route_is_classified_and_guarded(client: TestClient) -> None:
    """Each route is public on purpose, a webhook, a secret link (booking, email confirmation), or declares a token
    or staff dependency."""
    unclassified = []
    for method, path, route in every_route(client.app):  # type: ignore[arg-type]
        if (method, path) in PUBLIC or path in WEBHOOKS or BOOKING.match(path):
            continue
        if path.startswith("/api/") and "token" in guards(route):
            continue
        if path.startswith("/dashboard") and guards(route) & {"staff", "admin"}:
            continue
        unclassified.append((method, path))
    assert unclassified == []


def test_strangers_get_only_the_public_allow_list(client: TestClient, seeded: dict[str, int]) -> None:
    """Without credentials every route outside the allow-list answers 401/403/404 or sends to /login, and no
    answer carries the patient's name or number."""
    answered = []
    for method, path, _ in every_route(client.app):  # type: ignore[arg-type]
        url = concrete(path, seeded)
        body: dict[str, Any] = {"json": {}} if path.startswith("/api/") else {"data": {"action": "book"}}
        r = client.request(method, url, follow_redirects=False, **(body if method == "POST" else {}))
        assert NAME not in r.text and PHONE not in r.text, (method, url)
        if (method, path) in PUBLIC:
            assert r.status_code < 500, (method, url, r.status_code)
            answered.append((method, path))
            continue
        to_login = r.status_code in (302, 303, 307) and r.headers["location"].startswith("/login")
        expired_link = BOOKING.match(path) is not None and r.status_code == 404
        assert r.status_code in (401, 403) or to_login or expired_link, (method, url, r.status_code)
    assert set(answered) == set(PUBLIC)


FORGED = [None, "Bearer ", "Bearer fu_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer {token}x", "bearer {hash}"]


def test_api_refuses_missing_forged_and_hashed_tokens(client: TestClient, token: str, seeded: dict[str, int]) -> None:
    """The API wants the token itself: none, a guess, another scheme, a near miss or its stored hash get 401."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    urls = ("/api/patients", f"/api/patients/{seeded['pid']}", "/api/escalations", "/api/schedule")
    got = {}
    for header in FORGED:
        headers = {"Authorization": header.format(token=token, hash=digest)} if header else {}
        for url in urls:
            r = client.get(url, headers=headers)
            got[(header, url)] = r.status_code if NAME not in r.text else "leaked"
    assert got == {(header, url): 401 for header in FORGED for url in urls}


def test_tokens_are_stored_hashed_and_revoked_from_the_cli(
    client: TestClient, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token is kept as its SHA-256 only; `token list` shows ids and names, never values; `token revoke` ends it
    at once; revoking again fails."""
    monkeypatch.chdir(ROOT)
    env = {
        "FOLLOWUP_DATABASE__URL": rt.settings.database.url,
        "FOLLOWUP_SECURITY__SECRET_KEY": rt.settings.security.secret_key,
    }
    runner = CliRunner()
    made = runner.invoke(cli, ["token", "create", "--name", "records-system"], env=env, obj={})
    assert made.exit_code == 0, made.output
    raw = made.stdout.strip().splitlines()[-1]
    with rt.db.session() as s:
        (row,) = s.exec(select(m.ApiToken)).all()
        dumped = json.dumps(row.model_dump(mode="json"))
    assert row.token_hash == hashlib.sha256(raw.encode()).hexdigest() and raw not in dumped
    assert client.get("/api/patients", headers={"Authorization": f"Bearer {raw}"}).status_code == 200
    listed = runner.invoke(cli, ["token", "list"], env=env, obj={})
    assert listed.exit_code == 0 and f"{row.id}\trecords-system" in listed.stdout and raw not in listed.stdout
    revoked = runner.invoke(cli, ["token", "revoke", str(row.id)], env=env, obj={})
    assert revoked.exit_code == 0, revoked.output
    assert client.get("/api/patients", headers={"Authorization": f"Bearer {raw}"}).status_code == 401
    assert "revoked" in runner.invoke(cli, ["token", "list"], env=env, obj={}).stdout
    again = runner.invoke(cli, ["token", "revoke", str(row.id)], env=env, obj={})
    assert again.exit_code == 1 and f"no active token {row.id}" in again.output


def session_client(app: FastAPI, rt: Runtime, role: str) -> TestClient:
    user = add_staff(rt, f"{role}@clinic.example", role, "correct horse battery")
    c = TestClient(app)
    c.cookies.set(SESSION_COOKIE, start_session(rt, user))
    return c


def test_roles_are_enforced_on_every_staff_route(client: TestClient, rt: Runtime, seeded: dict[str, int]) -> None:
    """A clinician's session opens every staff page except the admin-only ones (403); an admin's opens all."""
    clinician = session_client(client.app, rt, "clinician")  # type: ignore[arg-type]
    admin = session_client(client.app, rt, "admin")  # type: ignore[arg-type]
    pages = [(p, guards(r)) for meth, p, r in every_route(client.app) if meth == "GET" and p.startswith("/dashboard")]  # type: ignore[arg-type]
    assert any("admin" in g for _, g in pages) and any("admin" not in g for _, g in pages)
    for path, g in pages:
        url = concrete(path, seeded)
        assert clinician.get(url).status_code == (403 if "admin" in g else 200), url
        assert admin.get(url).status_code == 200, url


def test_booking_link_opens_only_its_own_escalation(client: TestClient, rt: Runtime, seeded: dict[str, int]) -> None:
    """A valid signed link opens the booking page; one signed with another key, or for a tampered id, does not."""
    good = booking_svc.link(rt, seeded["eid"]).removeprefix(rt.settings.server.public_url)
    assert client.get(good).status_code == 200
    payload, _, signature = good.removeprefix("/book/").rpartition(".")
    assert client.get(f"/book/{payload}.{signature[::-1]}").status_code == 404
    assert client.get(f"/book/{payload[:-1]}x.{signature}").status_code == 404


REPLAYS = {0: 200, -30: 200, 590: 200, 610: 403, -610: 403, 86_400: 403}  # timestamp age in seconds: status


def test_sendgrid_events_outside_the_window_are_replays(client: TestClient, rt: Runtime) -> None:
    """A validly signed event batch is accepted only while its timestamp is within event_max_age_seconds (600 s)
    of now, either way; an old (or far-future) one is refused as a replay."""
    got = {}
    for age in REPLAYS:
        raw = json.dumps([{"event": "processed", "sg_event_id": f"ev-{age}", "followup_message_id": "1"}]).encode()
        headers = event_headers(raw, str(int(time.time()) - age))
        got[age] = client.post("/webhooks/sendgrid/events", content=raw, headers=headers).status_code
    assert got == REPLAYS


def test_docs_pages_are_off_in_production(
    db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """In production the Swagger and ReDoc pages do not exist; the schema does, and the API still wants a token."""
    settings = webhook_settings(
        db_url,
        security={"environment": "production", "secret_key": PRODUCTION_KEY},
        sendgrid={"inbound_password": PRODUCTION_KEY[::-1]},
        server={"public_url": "https://followup.clinic.example"},
    )
    runtime = build_runtime(settings, clock=clock, transports=dict(transports))
    try:
        with TestClient(create_app(runtime=runtime, background=False)) as c:
            assert c.get("/docs").status_code == 404 and c.get("/redoc").status_code == 404
            assert c.get("/openapi.json").status_code == 200
            assert c.get("/api/patients").status_code == 401
    finally:
        runtime.db.dispose()
