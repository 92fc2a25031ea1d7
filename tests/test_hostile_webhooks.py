"""Hostile bodies at every public entry point (the four webhooks and the intake form): each gets a 4xx or a clean
2xx, never a 5xx, and nothing is half-written (rows counted before and after). Oversized bodies get 413 before
they are read whole, also when streamed without a Content-Length. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

import factories
import pytest
import uvicorn
from factories import triage_body
from fastapi.testclient import TestClient
from livestack import eventually, free_port
from signed import (
    FORM,
    email_auth,
    email_fields,
    event_headers,
    post_events,
    post_sms,
    post_status,
    sms_fields,
    twilio_signature,
    webhook_settings,
)
from sqlmodel import SQLModel, col, func, select

from followup import models as m
from followup.clock import FakeClock
from followup.core.vocab import MessageState
from followup.runtime import Runtime, build_runtime
from followup.settings import Settings
from followup.transports.recording import RecordingTransport
from followup.web.app import create_app

PHONE = "+13105550142"
EMAIL = "ana@example.org"
MAX_BODY = 64_000  # server.max_body_bytes for these tests (sendgrid.inbound_max_bytes: 100 kB)
TABLES: list[type[SQLModel]] = [
    m.Patient,
    m.Triage,
    m.Consent,
    m.Message,
    m.Inbound,
    m.Escalation,
    m.DeliveryEvent,
    m.AuditLog,
]


@pytest.fixture
def rt(db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]) -> Iterator[Runtime]:
    """Small body limits; sender limits out of the way (the corpus comes from one sender; floods are tested below)."""
    settings = webhook_settings(
        db_url,
        server={"max_body_bytes": MAX_BODY},
        sendgrid={"inbound_max_bytes": 100_000},
        limits={"inbound_sms_per_minute": 1_000, "intake_per_minute": 1_000},
    )
    runtime = build_runtime(settings, clock=clock, transports=dict(transports))
    yield runtime
    runtime.db.dispose()


@pytest.fixture
def enrolled(client: TestClient, auth: dict[str, str]) -> int:
    """One SMS patient and one email patient, so that hostile replies can reach the deepest code."""
    client.post("/api/triage", json=triage_body(phone="+13105550143", email=EMAIL, channel="email"), headers=auth)
    r = client.post("/api/triage", json=triage_body(email="other@example.org"), headers=auth)
    assert r.status_code == 201, r.text
    return int(r.json()["patient_id"])


def counts(rt: Runtime) -> dict[str, int]:
    with rt.db.session() as s:
        return {t.__name__: int(s.exec(select(func.count()).select_from(t)).one()) for t in TABLES}


def half_written(rt: Runtime) -> list[str]:
    """Rows a finished request must never leave behind: replies stored but not acted on, sends in flight."""
    with rt.db.session() as s:
        stuck = s.exec(select(m.Inbound.id).where(m.Inbound.status.in_(("received", "processing")))).all()  # type: ignore[attr-defined]
        flying = s.exec(
            select(m.Message.id).where(m.Message.status.in_((MessageState.CLAIMED, MessageState.SENDING)))
        ).all()  # type: ignore[attr-defined]
    return [f"inbound:{i}" for i in stuck] + [f"message:{i}" for i in flying]


Send = Callable[[TestClient, Settings], Any]


@dataclass(frozen=True)
class Hostile:
    name: str
    send: Send
    writes: bool = False  # a clean 2xx that stores the request (everything else must store nothing)
    audited: bool = False  # a refusal that adds one audit row and nothing else (failed Inbound Parse credentials)


def raw_sms(content: bytes | str, content_type: str = FORM, signed_fields: dict[str, str] | None = None) -> Send:
    def send(c: TestClient, settings: Settings) -> Any:
        headers = {"Content-Type": content_type}
        if signed_fields is not None:
            headers["X-Twilio-Signature"] = twilio_signature(settings, "/webhooks/twilio/sms", signed_fields)
        return c.post("/webhooks/twilio/sms", content=content, headers=headers)

    return send


def signed_sms(**fields: str) -> Send:
    return lambda c, settings: post_sms(c, settings, fields)


def inbound_email(
    data: dict[str, Any] | None = None,
    files: Any = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    auth: bool = True,
) -> Send:
    def send(c: TestClient, settings: Settings) -> Any:
        h = {**(email_auth() if auth else {}), **(headers or {})}
        if content is not None:
            return c.post("/webhooks/sendgrid/inbound", content=content, headers=h)
        return c.post("/webhooks/sendgrid/inbound", data=data, files=files, headers=h)

    return send


def events(content: bytes, signed: bool = True) -> Send:
    def send(c: TestClient, settings: Settings) -> Any:
        headers = event_headers(content) if signed else {"Content-Type": "application/json"}
        return c.post("/webhooks/sendgrid/events", content=content, headers=headers)

    return send


def status(mid: str, **fields: str) -> Send:
    def send(c: TestClient, settings: Settings) -> Any:
        path = f"/webhooks/twilio/status?mid={quote(mid)}"  # as Twilio calls (and signs) the URL we gave it
        body = {"MessageSid": "SMnope", "MessageStatus": "delivered", **fields}
        return c.post(
            path,
            content=urlencode(body),
            headers={"X-Twilio-Signature": twilio_signature(settings, path, body), "Content-Type": FORM},
        )

    return send


BOUNDARY = "xYzZY"
TRUNCATED_MULTIPART = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="from"\r\n\r\nana@example.org\r\n'
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="text"\r\n\r\nmy hand is wea'
).encode()
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
RAW_MIME = (
    "From: Ana <ana@example.org>\r\nTo: followup@clinic.example\r\nSubject: =?x-unknown?q?caf=E9?=\r\n"
    "Message-ID: <raw-1@example.org>\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
    "Content-Type: text/plain; charset=x-made-up\r\nContent-Transfer-Encoding: base64\r\n\r\n!!not base64!!\r\n"
    "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>still <b>twitching</b><script>x()</script>\r\n"
)
DEEP_JSON = b"[" * 50_000 + b"]" * 50_000

CORPUS = [
    # inbound SMS
    Hostile("sms-unsigned", raw_sms(urlencode(sms_fields(PHONE, "hi", "SM1")))),
    Hostile("sms-json-instead-of-form", raw_sms(json.dumps(sms_fields(PHONE, "hi", "SM1")), "application/json", {})),
    Hostile("sms-wrong-content-type", raw_sms(urlencode(sms_fields(PHONE, "hi", "SM1")), "text/plain", {})),
    Hostile(
        "sms-invalid-utf8",
        raw_sms(
            b"MessageSid=SM2&From=%2B13105550142&Body=%FF%FE%C3%28",
            FORM,
            {"MessageSid": "SM2", "From": PHONE, "Body": "\ufffd\ufffd\ufffd("},
        ),
        writes=True,
    ),
    Hostile("sms-missing-sid", signed_sms(From=PHONE, Body="weaker")),
    Hostile("sms-missing-from", signed_sms(MessageSid="SM3", Body="my arm is weaker"), writes=True),
    Hostile(
        "sms-duplicated-fields",
        raw_sms(
            b"MessageSid=SM4&From=%2B13105550143&From=%2B13105550142&Body=a&Body=b",
            FORM,
            {"MessageSid": "SM4", "From": PHONE, "Body": "b"},
        ),
    ),  # Twilio never repeats a field: 400
    Hostile(
        "sms-nul-and-controls",
        signed_sms(**sms_fields(PHONE, "my\x00 hand\x1b[31m is weaker\r\n\x07", "SM5")),
        writes=True,
    ),
    Hostile("sms-nul-in-sid", signed_sms(**sms_fields(PHONE, "hello", "SM\x006")), writes=True),
    Hostile("sms-long-body", signed_sms(**sms_fields(PHONE, "x" * 30_000, "SM7")), writes=True),  # stored cut
    Hostile(
        "sms-emoji-rtl-zalgo",
        signed_sms(**sms_fields(PHONE, "\u202eweaker\u202c 🤷🏽‍♀️ c̷̢̛a̸n̵'t̶ swallow", "SM8")),
        writes=True,
    ),
    Hostile(
        "sms-file-upload",
        lambda c, s: c.post(
            "/webhooks/twilio/sms", files={"Body": ("x.txt", b"hi")}, headers={"X-Twilio-Signature": "x"}
        ),
    ),
    Hostile("sms-truncated-multipart", raw_sms(TRUNCATED_MULTIPART, MULTIPART, {})),
    # status callbacks
    Hostile("status-unsigned", lambda c, s: c.post("/webhooks/twilio/status?mid=1", data={"MessageStatus": "failed"})),
    Hostile("status-superscript-id", status("²"), writes=True),
    Hostile("status-huge-id", status("9" * 40), writes=True),
    Hostile("status-unknown-state", status("1", MessageStatus="exploded\x00"), writes=True),
    # SendGrid events
    Hostile("events-unsigned", events(b'[{"event": "bounce"}]', signed=False)),
    Hostile("events-not-json", events(b"event=bounce&email=x")),
    Hostile("events-invalid-utf8", events(b'[{"event": "\xff\xfe"}]')),
    Hostile("events-object-not-list", events(b'{"event": "bounce"}')),
    Hostile("events-deeply-nested", events(DEEP_JSON)),
    Hostile(
        "events-odd-items",
        events(
            json.dumps(
                [
                    1,
                    "x",
                    None,
                    [],
                    {},
                    {"followup_message_id": "1e9999", "sg_event_id": "a"},
                    {"followup_message_id": 10**30, "sg_event_id": "b"},
                    {"followup_message_id": True, "sg_event_id": {"x": 1}},
                    {"followup_message_id": "1", "sg_event_id": "c\x00\ud800", "event": "bounce", "timestamp": 10**20},
                ]
            ).encode()
        ),
        writes=True,
    ),
    Hostile(
        "events-infinity-id",
        events(b'[{"followup_message_id": Infinity, "sg_event_id": "i", "event": "bounce"}]'),
        writes=True,
    ),
    # inbound email
    Hostile("email-no-credentials", inbound_email(email_fields(EMAIL, "hi", "<a@x>"), auth=False), audited=True),
    Hostile(
        "email-wrong-password",
        inbound_email(email_fields(EMAIL, "hi", "<a@x>"), headers={"Authorization": "Basic Og=="}),
        audited=True,
    ),
    Hostile(
        "email-json-instead-of-multipart",
        inbound_email(content=b'{"from": "ana@example.org"}', headers={"Content-Type": "application/json"}),
    ),
    # python-multipart reads a body cut before its closing boundary as far as it goes: stored, nothing half-done
    Hostile(
        "email-truncated-multipart",
        inbound_email(content=TRUNCATED_MULTIPART, headers={"Content-Type": MULTIPART}),
        writes=True,
    ),
    Hostile("email-missing-from", inbound_email({"text": "my hand is weaker"})),
    Hostile(
        "email-wrong-charsets",
        inbound_email(
            {
                **email_fields(EMAIL, "caf\u00e9 weaker", "<c@x>"),
                "charsets": '{"text": "x-unknown", "subject": "utf-16"}',
            }
        ),
        writes=True,
    ),
    Hostile(
        "email-charsets-garbage",
        inbound_email({**email_fields(EMAIL, "ok", "<d@x>"), "charsets": "[1, {", "envelope": '{"to": "not-a-list"}'}),
        writes=True,
    ),
    Hostile(
        "email-invalid-utf8-part",
        inbound_email(
            content=(
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="from"\r\n\r\n{EMAIL}\r\n--{BOUNDARY}\r\n'
                f'Content-Disposition: form-data; name="text"\r\n\r\n'
            ).encode()
            + b"\xff\xfe weaker\xc3\x28\r\n"
            + f"--{BOUNDARY}--\r\n".encode(),
            headers={"Content-Type": MULTIPART},
        ),
        writes=True,
    ),
    Hostile(
        "email-duplicated-fields",
        inbound_email(
            content=(
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="from"\r\n\r\n{EMAIL}\r\n'
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="from"\r\n\r\nmallory@evil.example\r\n'
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="text"\r\n\r\nfine\r\n--{BOUNDARY}--\r\n'
            ).encode(),
            headers={"Content-Type": MULTIPART},
        ),
        writes=True,
    ),
    Hostile(
        "email-nul-and-surrogate-escapes",
        inbound_email({**email_fields(EMAIL, "wea\x00ker", "<e\x00@x>"), "subject": "re:\x00"}),
        writes=True,
    ),
    Hostile("email-raw-mime-broken-encodings", inbound_email({"email": RAW_MIME}), writes=True),
    Hostile(
        "email-too-many-files",
        inbound_email(email_fields(EMAIL, "x", "<f@x>"), files=[("attachment", (f"{i}.txt", b"x")) for i in range(60)]),
    ),
    Hostile(
        "email-html-bomb",
        inbound_email({**email_fields(EMAIL, "", "<g@x>"), "html": "<div>" * 2_000 + "weaker" + "</div>" * 2_000}),
        writes=True,
    ),
]


def outcome(case: Hostile, client: TestClient, rt: Runtime) -> str:
    """ "ok", or what went wrong with this case."""
    before = counts(rt)
    r = case.send(client, rt.settings)
    if r.status_code >= 500:
        return f"{r.status_code}: {r.text[:200]}"
    if half_written(rt):
        return f"half-written: {half_written(rt)}"
    if case.writes and not 200 <= r.status_code < 300:
        return f"expected a clean 2xx, got {r.status_code}: {r.text[:200]}"
    expected = {**before, "AuditLog": before["AuditLog"] + 1} if case.audited else before
    if not case.writes and not (400 <= r.status_code < 500 and counts(rt) == expected):
        return f"expected a 4xx storing nothing, got {r.status_code}, rows {before} -> {counts(rt)}"
    return "ok"


def test_hostile_webhooks_get_4xx_or_a_clean_2xx(rt: Runtime, enrolled: int) -> None:
    """Every body of the corpus: never a 5xx; refused ones store nothing; accepted ones leave nothing half-done.
    (One app and database for the whole table: each case counts the rows before and after itself.)"""
    with TestClient(create_app(runtime=rt, background=False), raise_server_exceptions=False) as c:
        results = {case.name: outcome(case, c, rt) for case in CORPUS}
    assert {name: what for name, what in results.items() if what != "ok"} == {}


# ---- the intake form -------------------------------------------------------------------------------------------


def intake_form(**over: str | list[str]) -> dict[str, str | list[str]]:
    chicago: dict[str, str | list[str]] = {
        "phone": "(310) 555-0199",
        "email": "",
        "timezone": "America/Chicago",
        "locations": ["calf"],
    }
    return factories.intake_form(**{**chicago, **over})


def csrf(client: TestClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/intake").text)
    assert found is not None
    return found.group(1)


INTAKE = [
    ("no-csrf", lambda c: c.post("/intake", data=intake_form()), 403),
    ("json-instead-of-form", lambda c: c.post("/intake", json=intake_form(csrf_token=csrf(c))), 403),
    (
        "truncated-multipart",
        lambda c: c.post("/intake", content=TRUNCATED_MULTIPART, headers={"Content-Type": MULTIPART}),
        403,
    ),
    ("missing-everything", lambda c: c.post("/intake", data={"csrf_token": csrf(c)}), 422),
    ("name-too-long", lambda c: c.post("/intake", data=intake_form(name="A" * 5_000, csrf_token=csrf(c))), 422),
    ("nul-in-name", lambda c: c.post("/intake", data=intake_form(name="Ana\x00Diaz", csrf_token=csrf(c))), 422),
    (
        "control-only-name",
        lambda c: c.post("/intake", data=intake_form(name="\x1b\x07\u200b", csrf_token=csrf(c))),
        422,
    ),
    (
        "nan-and-inf",
        lambda c: c.post("/intake", data=intake_form(sleep_hours="NaN", stress="inf", csrf_token=csrf(c))),
        422,
    ),
    ("huge-number", lambda c: c.post("/intake", data=intake_form(onset_weeks="1e309", csrf_token=csrf(c))), 422),
    (
        "path-as-zone",
        lambda c: c.post("/intake", data=intake_form(timezone="../../etc/passwd", csrf_token=csrf(c))),
        422,
    ),
    ("nul-in-zone", lambda c: c.post("/intake", data=intake_form(timezone="America/\x00", csrf_token=csrf(c))), 422),
    (
        "locations-flood",
        lambda c: c.post("/intake", data=intake_form(locations=["calf"] * 500, csrf_token=csrf(c))),
        422,
    ),
    (
        "invalid-utf8",
        lambda c: c.post(
            "/intake", content=b"name=%FF%FE&csrf_token=" + csrf(c).encode(), headers={"Content-Type": FORM}
        ),
        422,
    ),
    (
        "duplicated-fields",
        lambda c: c.post(
            "/intake",
            content=urlencode(
                [*intake_form(csrf_token=csrf(c)).items(), ("name", "Mallory"), ("consent", "no")], doseq=True
            ),
            headers={"Content-Type": FORM},
        ),
        422,
    ),
]


def test_hostile_intake_form_is_refused_and_writes_nothing(rt: Runtime) -> None:
    """Every hostile intake post of the table gets its 4xx, never a 5xx, and stores nothing."""
    before = counts(rt)
    with TestClient(create_app(runtime=rt, background=False), raise_server_exceptions=False) as c:
        got = {name: send(c).status_code for name, send, _ in INTAKE}
    assert got == {name: expected for name, _, expected in INTAKE}
    assert counts(rt) == before


def test_a_valid_intake_still_enrolls(client: TestClient, rt: Runtime) -> None:
    """The corpus is not refused for a trivial reason: the same form, valid, enrolls the patient."""
    before = counts(rt)
    r = client.post("/intake", data=intake_form(csrf_token=csrf(client)))
    assert r.status_code == 201, r.text[:300]
    assert counts(rt)["Patient"] == before["Patient"] + 1


# ---- oversized bodies, on a real server --------------------------------------------------------------------------


@contextmanager
def serving(rt: Runtime) -> Iterator[int]:
    """The app under uvicorn on a free loopback port, dispatcher off."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime=rt, background=False), host="127.0.0.1", port=port, log_config=None, access_log=False
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, what="the app to start", timeout=90)  # it loads the detector first
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def answer_to(port: int, head: str, chunks: Iterator[bytes]) -> str:
    """Send a request head and then body bytes that never end; return the status line the server answers with.
    A server that waited for the whole body would never answer (the socket timeout fails the test instead)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while still sending: the answer is already waiting
        return sock.recv(4096).decode("latin-1").split("\r\n", 1)[0]


@pytest.mark.parametrize(
    "path",
    ["/webhooks/twilio/sms", "/webhooks/sendgrid/events", "/webhooks/sendgrid/inbound", "/intake", "/api/triage"],
)
def test_oversized_bodies_get_413_before_they_are_read_whole(rt: Runtime, path: str) -> None:
    """A Content-Length over the limit is refused at once with no body sent; a chunked body with no length is
    refused once it passes the limit, while the client is still sending (the body never ends)."""
    limit = 100_000 if path.endswith("/inbound") else MAX_BODY
    before = counts(rt)
    with serving(rt) as port:
        credentials = email_auth()["Authorization"]  # the inbound route checks them before reading the body
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nAuthorization: {credentials}\r\n"
        declared = f"{head}Content-Length: {limit + 1}\r\n\r\n"
        assert answer_to(port, declared, iter([])) == "HTTP/1.1 413 Request Entity Too Large"
        chunk = b"a" * 8_192
        endless = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(limit // len(chunk) + 2))
        streamed = f"{head}Transfer-Encoding: chunked\r\n\r\n"
        assert answer_to(port, streamed, endless) == "HTTP/1.1 413 Request Entity Too Large"
    assert counts(rt) == before


def test_bodies_under_the_limit_still_go_through(client: TestClient, rt: Runtime, enrolled: int) -> None:
    """Just under the limit, streamed in chunks or not, an inbound SMS is read and stored as usual."""
    fields = sms_fields(PHONE, "x" * (MAX_BODY - 500), "SMbig")
    r = post_sms(client, rt.settings, fields)
    assert r.status_code == 200
    streamed = sms_fields(PHONE, "y" * (MAX_BODY - 500), "SMbig2")
    raw = urlencode(streamed).encode()
    r = client.post(
        "/webhooks/twilio/sms",
        content=(raw[i : i + 4096] for i in range(0, len(raw), 4096)),
        headers={
            "Content-Type": FORM,
            "X-Twilio-Signature": twilio_signature(rt.settings, "/webhooks/twilio/sms", streamed),
        },
    )
    assert r.status_code == 200
    assert counts(rt)["Inbound"] == 2


def test_events_signed_then_truncated_store_nothing(client: TestClient, rt: Runtime) -> None:
    """A signed event batch cut short in transit no longer matches its signature: 403, nothing stored."""
    raw = json.dumps([{"event": "bounce", "sg_event_id": "t", "followup_message_id": "1"}]).encode()
    before = counts(rt)
    r = client.post("/webhooks/sendgrid/events", content=raw[:-7], headers=event_headers(raw))
    assert r.status_code == 403 and counts(rt) == before
    assert (
        post_events(client, [{"event": "processed", "sg_event_id": "ok", "followup_message_id": "1"}]).status_code
        == 200
    )


def test_status_for_someone_elses_message_changes_nothing(client: TestClient, rt: Runtime, enrolled: int) -> None:
    """A signed status callback naming our message id but another provider id is ignored."""
    from followup.services.dispatch import Dispatcher

    Dispatcher(rt).run_once()
    with rt.db.session() as s:
        sent = s.exec(select(m.Message).where(m.Message.status == MessageState.SENT)).first()
    assert sent is not None and sent.id is not None
    r = post_status(
        client, rt.settings, sent.id, {"MessageSid": "SMsomeoneelse", "MessageStatus": "failed", "ErrorCode": "21610"}
    )
    assert r.status_code == 204
    with rt.db.session() as s:
        again = s.get(m.Message, sent.id)
        patient = s.get(m.Patient, sent.patient_id)
    assert again is not None and again.status == MessageState.SENT and patient is not None and patient.sms_state == "ok"


# ---- floods: per-sender limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([0, 0, 0, 0], [True, True, True, False]),  # a burst of 3 per minute, then refused
        ([0, 0, 0, 20], [True, True, True, True]),  # 20 s later a token is back (3 a minute: one every 20 s)
        ([0, 0, 0, 0, 0, 60], [True, True, True, False, False, True]),
        ([0, 600, 0, 0, 0], [True, True, True, True, False]),  # idle time refills to the burst, not beyond
    ],
)
def test_token_bucket_allows_a_burst_then_the_rate(steps: list[float], expected: list[bool]) -> None:
    """A bucket of 3 a minute: three at once, then one every 20 s; waiting never saves up more than the burst."""
    from followup.core.limits import Limit, take

    limit, bucket, now, got = Limit.per_minute(3), None, 0.0, []
    for step in steps:
        now += step
        bucket, decision = take(limit, bucket, now)
        got.append(decision.allowed)
    assert got == expected


def test_token_buckets_report_a_flood_once() -> None:
    """The first refusal starts a flood, the next allowed request ends it with the count (forgetting old senders'
    buckets: tests/test_limits.py)."""
    from followup.core.limits import Limit, take

    limit, bucket, decisions = Limit.per_minute(1), None, []
    for _ in range(4):
        bucket, decision = take(limit, bucket, 0.0)
        decisions.append(decision)
    assert [d.flood_started for d in decisions] == [False, True, False, False]
    assert take(limit, bucket, 60.0)[1].flood_ended == 3


@pytest.mark.parametrize(
    ("client", "key"),
    [
        (("203.0.113.7", 1), "203.0.113.7"),
        (("2001:db8:1:2:aaaa::1", 1), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 1), "2001:db8:1:2::/64"),  # the same household or attacker
        (("testclient", 1), "testclient"),
        (None, "unknown"),
    ],
)
def test_intake_senders_are_keyed_by_address_and_ipv6_by_64(client: tuple[str, int] | None, key: str) -> None:
    """IPv4 clients are counted one by one; an IPv6 client by its /64, which one subscriber gets."""
    from followup.web.limits import client_key

    assert client_key({"client": client}) == key


@pytest.fixture
def limited(db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]) -> Iterator[Runtime]:
    settings = webhook_settings(db_url, limits={"inbound_sms_per_minute": 3, "intake_per_minute": 2})
    runtime = build_runtime(settings, clock=clock, transports=dict(transports))
    yield runtime
    runtime.db.dispose()


def audit_actions(rt: Runtime) -> list[m.AuditLog]:
    with rt.db.session() as s:
        return list(s.exec(select(m.AuditLog).where(m.AuditLog.actor == "limits").order_by(col(m.AuditLog.id))))


def test_sms_flood_from_one_number_is_cut_and_others_go_through(
    limited: Runtime, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Past 3 signed SMS a minute one number's texts get an empty TwiML answer and are stored marked as a flood,
    never dropped (one escalation, one set of alerts, however long it goes on); another patient's text still goes
    through; the flood is audited and logged once each way by a hash, never the number; a minute later the number
    is heard again."""
    from followup.services.tokens import create_token

    rt = limited
    caplog.set_level(logging.INFO, logger="followup.limits")
    auth = {"Authorization": f"Bearer {create_token(rt, 'flood')[1]}"}
    with TestClient(create_app(runtime=rt, background=False)) as c:
        c.post("/api/triage", json=triage_body(), headers=auth)
        c.post("/api/triage", json=triage_body(phone="+13105550143", email="b@example.org"), headers=auth)
        answers = [post_sms(c, rt.settings, sms_fields(PHONE, "my hand is weaker", f"SMflood{i}")) for i in range(8)]
        assert [r.status_code for r in answers] == [200] * 8
        assert all(r.text.endswith("<Response/>") for r in answers[3:])
        assert post_sms(c, rt.settings, sms_fields("+13105550143", "fine today", "SMother")).status_code == 200
        with rt.db.session() as s:
            stored = list(s.exec(select(m.Inbound).order_by(m.Inbound.id)))
            alerts = s.exec(select(func.count()).select_from(m.Message).where(m.Message.kind == "alert")).one()
            escalations = s.exec(select(func.count()).select_from(m.Escalation)).one()
        senders = [i.sender for i in stored]
        assert senders.count(PHONE) == 8 and "+13105550143" in senders
        assert [i.meta.get("flood") for i in stored if i.sender == PHONE] == [None] * 3 + ["read"] * 5
        assert escalations == 1 and alerts == 2
        clock.advance(timedelta(minutes=1))
        assert post_sms(c, rt.settings, sms_fields(PHONE, "still weaker", "SMlater")).status_code == 200
    started, ended = audit_actions(rt)
    assert started.action == "limits.inbound_sms_flood_started" and ended.action == "limits.inbound_sms_flood_ended"
    assert started.subject == ended.subject and ended.detail == {"refused": 5}
    flood_lines = [r.getMessage() for r in caplog.records if r.name == "followup.limits"]
    assert len(flood_lines) == 2 and not any("5550142" in line for line in flood_lines)
    assert "5550142" not in started.subject


def test_forged_sms_cannot_use_up_a_patients_limit(limited: Runtime, enrolled_limited: None) -> None:
    """Unsigned posts claiming a patient's number are refused by the route and cost that number nothing."""
    rt = limited
    with TestClient(create_app(runtime=rt, background=False)) as c:
        for i in range(10):
            forged = c.post("/webhooks/twilio/sms", data=sms_fields(PHONE, "spam", f"SMforged{i}"))
            assert forged.status_code == 403
        real = post_sms(c, rt.settings, sms_fields(PHONE, "doing fine", "SMreal"))
        assert real.status_code == 200
    with rt.db.session() as s:
        assert [i.provider_key for i in s.exec(select(m.Inbound))] == ["twilio:SMreal"]
    assert audit_actions(rt) == []


@pytest.fixture
def enrolled_limited(limited: Runtime) -> None:
    from followup.core.triage import TriageIn
    from followup.services.enrollment import submit_triage

    submit_triage(limited, TriageIn.model_validate(triage_body()), source="api", actor="test")


def test_intake_flood_from_one_address_gets_429(limited: Runtime) -> None:
    """Past 2 posts a minute from one address the intake form answers 429 with Retry-After and stores nothing;
    a patient on another address is not affected."""
    rt = limited
    app = create_app(runtime=rt, background=False)
    with TestClient(app, client=("198.51.100.9", 5000)) as flood, TestClient(app, client=("203.0.113.5", 5000)) as ok:
        token = csrf(flood)
        for _ in range(2):
            assert flood.post("/intake", data=intake_form(name="", csrf_token=token)).status_code == 422
        before = counts(rt)
        refused = flood.post("/intake", data=intake_form(csrf_token=token))
        assert refused.status_code == 429 and refused.headers["retry-after"] == "30"
        assert "call" in refused.text and {**counts(rt), "AuditLog": 0} == {**before, "AuditLog": 0}
        assert "Please wait a minute" in refused.text and '<div lang="es"><p>Acabamos de recibir' in refused.text
        assert ok.post("/intake", data=intake_form(csrf_token=csrf(ok))).status_code == 201
    (started,) = audit_actions(rt)
    assert started.action == "limits.intake_flood_started" and "198.51" not in started.subject


def test_staff_login_with_hostile_input_is_refused_not_a_crash(rt: Runtime) -> None:
    """The public sign-in form, fed NUL and oversized values with a valid CSRF token, says "wrong email or password"
    (401) and changes nothing but the audit log."""
    before = counts(rt)
    with TestClient(create_app(runtime=rt, background=False), raise_server_exceptions=False) as c:
        found = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text)
        assert found is not None
        got = [
            c.post("/login", data={"email": email, "password": password, "csrf_token": found.group(1)}).status_code
            for email, password in [
                ("a\x00b@x.org", "password123"),
                ("a@x.org", "pw\x00" * 5),
                ("x" * 5_000, "p" * 5_000),
            ]
        ]
    assert got == [401, 401, 401]
    assert {**counts(rt), "AuditLog": 0} == {**before, "AuditLog": 0}
