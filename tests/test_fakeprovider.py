"""The fake Twilio + SendGrid server, driven through the real SDKs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import requests
from python_http_client.exceptions import (
    BadRequestsError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import CustomArg, Mail, ReplyTo
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from followup.fakeprovider import DEV_EVENT_PUBLIC_KEY, FakeProvider, Faults, sign_twilio
from followup.fakeprovider.faults import FaultPlan
from followup.fakeprovider.store import SlidingWindowMax
from followup.fakeprovider.twilio_api import num_segments

SID = "AC" + "1" * 32
TOKEN = "test-auth-token"
SG_KEY = "SG.test.key"
FROM = "+15550000001"
PATIENT = "+15551230001"


class Receiver:
    """A tiny webhook receiver that records what it is posted and can fail the first posts."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.fail_first = 0
        self.reply = b"<Response/>"
        self._cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._cond:
                    failing = outer.fail_first > 0
                    outer.fail_first -= failing
                    if not failing:
                        outer.posts.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    outer._cond.notify_all()
                data = b"nope" if failing else outer.reply
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01})
        self._thread.start()

    def wait_for(self, n: int, timeout: float = 3.0) -> list[dict[str, Any]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.posts) >= n, timeout)
            return list(self.posts)

    def forms(self, path_prefix: str = "/") -> list[dict[str, str]]:
        return [dict(parse_qsl(p["body"].decode())) for p in self.posts if p["path"].startswith(path_prefix)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def fp(receiver: Receiver) -> Iterator[FakeProvider]:
    provider = FakeProvider(
        twilio_account_sid=SID,
        twilio_auth_token=TOKEN,
        sendgrid_api_key=SG_KEY,
        events_url=f"{receiver.url}/events",
        callback_backoff_s=0.01,
    )
    with provider:
        yield provider


def twilio(fp: FakeProvider, sid: str = SID, token: str = TOKEN, timeout: float = 5.0) -> Client:
    client = Client(sid, token, http_client=TwilioHttpClient(timeout=timeout))
    client.api.base_url = fp.url
    return client


def sendgrid(fp: FakeProvider, key: str = SG_KEY) -> SendGridAPIClient:
    sg = SendGridAPIClient(key, host=fp.url)
    sg.client.timeout = 5
    return sg


def mail(to: str = "pat@example.org", message_id: str = "m-1") -> Mail:
    m = Mail(
        from_email="clinic@example.org",
        to_emails=to,
        subject="How are you?",
        plain_text_content="Plain",
        html_content="<p>Html</p>",
    )
    m.custom_arg = CustomArg("followup_message_id", message_id)
    m.reply_to = ReplyTo("reply@example.org")
    return m


def send_sms(client: Client, receiver: Receiver | None = None, to: str = PATIENT, mid: str = "m-1") -> Any:
    callback = f"{receiver.url}/status?mid={mid}" if receiver else None
    return client.messages.create(to=to, from_=FROM, body="Hi there", status_callback=callback)


# Twilio ---------------------------------------------------------------------------------------------------


def test_sms_send_is_recorded_with_twilio_shape(fp: FakeProvider, receiver: Receiver) -> None:
    """An SDK send answers like Twilio and is recorded with our id taken from the callback's `mid`."""
    msg = send_sms(twilio(fp), receiver, mid="abc-42")
    assert msg.sid.startswith("SM") and len(msg.sid) == 34
    assert (msg.status, msg.to, msg.from_, msg.body, msg.num_segments) == (
        "queued",
        PATIENT,
        FROM,
        "Hi there",
        "1",
    )
    assert msg.date_created is not None and msg.error_code is None
    [rec] = fp.messages()
    assert rec["channel"] == "sms" and rec["provider_id"] == msg.sid and rec["message_id"] == "abc-42"
    assert (rec["to"], rec["from"], rec["body"]) == (PATIENT, FROM, "Hi there")
    assert rec["status_callback"] == f"{receiver.url}/status?mid=abc-42"
    assert datetime.fromisoformat(rec["received_at"]).tzinfo is not None


@pytest.mark.parametrize(
    ("sid", "token", "client_sid"),
    [
        (SID, "wrong-token", None),
        ("AC" + "2" * 32, TOKEN, None),
        (SID, TOKEN, "AC" + "3" * 32),  # right credentials, another account's path
    ],
    ids=["token", "sid", "path"],
)
def test_sms_wrong_credentials_are_rejected(fp: FakeProvider, sid: str, token: str, client_sid: str | None) -> None:
    """Bad Basic auth, or a path naming another account, raises 401 / 20003 and records nothing."""
    client = twilio(fp, sid, token)
    messages = client.api.v2010.accounts(client_sid).messages if client_sid else client.messages
    with pytest.raises(TwilioRestException) as err:
        messages.create(to=PATIENT, from_=FROM, body="x")
    assert (err.value.status, err.value.code) == (401, 20003)
    assert fp.messages() == []


@pytest.mark.parametrize(
    ("to", "faults", "code"),
    [
        ("+15005550009", Faults(sms_error_codes={"+15005550009": 21211}), 21211),
        (PATIENT, Faults(sms_error_codes={PATIENT: 21610}), 21610),
        (PATIENT, Faults(sms_error_codes={PATIENT: 21614}), 21614),
        ("555-1234", Faults(), 21211),  # not E.164
    ],
)
def test_sms_error_codes_surface_and_are_not_recorded(fp: FakeProvider, to: str, faults: Faults, code: int) -> None:
    """Twilio error codes reach the SDK as `TwilioRestException.code`; rejected sends are not recorded."""
    fp.set_faults(faults)
    with pytest.raises(TwilioRestException) as err:
        twilio(fp).messages.create(to=to, from_=FROM, body="x")
    assert (err.value.status, err.value.code) == (400, code)
    assert to not in err.value.msg
    assert fp.messages() == []


def test_burst_429_carries_retry_after_then_clears(fp: FakeProvider) -> None:
    """`burst_429` answers the next N API calls 429 with Retry-After (both APIs), then lets sends through."""
    fp.set_faults(Faults(burst_429=3, retry_after_s=7))
    client = twilio(fp)
    with pytest.raises(TwilioRestException) as err:
        send_sms(client)
    assert (err.value.status, err.value.code) == (429, 20429)
    raw = httpx.post(f"{fp.url}/2010-04-01/Accounts/{SID}/Messages.json", auth=(SID, TOKEN), data={})
    assert (raw.status_code, raw.headers["Retry-After"], raw.json()["code"]) == (429, "7", 20429)
    with pytest.raises(TooManyRequestsError) as sg_err:
        sendgrid(fp).send(mail())
    assert sg_err.value.headers["Retry-After"] == "7"
    assert sg_err.value.to_dict["errors"][0]["message"]
    assert fp.faults().burst_429 == 0
    send_sms(client)
    assert fp.stats()["responses"] == {"201": 1, "429": 3}


def test_error_rate_is_seeded_and_errors_are_not_recorded() -> None:
    """`error_rate` answers 500/503 with Twilio bodies; the same seed gives the same sequence."""

    def statuses(seed: int) -> list[int]:
        with FakeProvider(twilio_account_sid=SID, twilio_auth_token=TOKEN, seed=seed) as p:
            p.set_faults(Faults(error_rate=0.5))
            url = f"{p.url}/2010-04-01/Accounts/{SID}/Messages.json"
            with httpx.Client(auth=(SID, TOKEN)) as http:
                answers = [http.post(url, data={"To": PATIENT, "From": FROM, "Body": "x"}) for _ in range(20)]
            assert len(p.messages()) == sum(a.status_code == 201 for a in answers)
            for a in answers:
                if a.status_code >= 500:
                    assert a.json()["code"] in (20500, 20503)
            return [a.status_code for a in answers]

    first = statuses(7)
    assert first == statuses(7)
    assert {500, 503} & set(first) and 201 in first


def test_stalled_send_times_the_client_out_but_is_still_processed(fp: FakeProvider) -> None:
    """`timeout_rate` stalls the answer past the client's timeout; the send itself was accepted."""
    fp.set_faults(Faults(timeout_rate=1.0, stall_ms=2000))
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        send_sms(twilio(fp, timeout=0.3))
    assert time.monotonic() - started < 1.5
    assert len(fp.messages()) == 1


def test_latency_is_added_to_api_answers(fp: FakeProvider) -> None:
    """`latency_ms` delays each API answer."""
    fp.set_faults(Faults(latency_ms=150))
    started = time.monotonic()
    send_sms(twilio(fp))
    assert time.monotonic() - started >= 0.15


@pytest.mark.parametrize(
    ("undelivered", "expected"),
    [
        ({}, [("sent", None), ("delivered", None)]),
        ({PATIENT: 30007}, [("sent", None), ("undelivered", "30007")]),
        ({PATIENT: 30001}, [("failed", "30001")]),
    ],
    ids=["delivered", "undelivered", "failed"],
)
def test_status_callbacks_arrive_signed_and_in_order(
    fp: FakeProvider, receiver: Receiver, undelivered: dict[str, int], expected: list[tuple[str, str | None]]
) -> None:
    """Status callbacks come in order, carry ErrorCode when failing, and validate with RequestValidator."""
    fp.set_faults(Faults(sms_undelivered=undelivered))
    msg = send_sms(twilio(fp), receiver, mid="m-9")
    posts = receiver.wait_for(len(expected))
    assert fp.wait_idle()
    forms = receiver.forms("/status")
    assert [(f["MessageStatus"], f.get("ErrorCode")) for f in forms] == expected
    validator = RequestValidator(TOKEN)
    url = f"{receiver.url}/status?mid=m-9"
    for post, form in zip(posts, forms, strict=True):
        assert form["MessageSid"] == form["SmsSid"] == msg.sid
        assert (form["AccountSid"], form["To"], form["From"], form["ApiVersion"]) == (
            SID,
            PATIENT,
            FROM,
            "2010-04-01",
        )
        assert validator.validate(url, form, post["headers"]["X-Twilio-Signature"])
        assert not validator.validate(url, {**form, "MessageStatus": "read"}, post["headers"]["X-Twilio-Signature"])
    fetched = twilio(fp).messages(msg.sid).fetch()
    assert fetched.status == expected[-1][0]
    assert fetched.error_code == (int(expected[-1][1]) if expected[-1][1] else None)


def test_status_callback_is_retried_after_failures(fp: FakeProvider, receiver: Receiver) -> None:
    """A callback answered 5xx is retried with backoff until the receiver takes it."""
    receiver.fail_first = 2
    send_sms(twilio(fp), receiver)
    receiver.wait_for(2)
    assert fp.wait_idle()
    assert [f["MessageStatus"] for f in receiver.forms()] == ["sent", "delivered"]
    webhooks = fp.stats()["webhooks"]
    assert (webhooks["sms_status_delivered"], webhooks["sms_status_failed_attempts"]) == (2, 2)


def test_unreachable_callback_is_dropped_after_a_few_attempts(fp: FakeProvider) -> None:
    """A callback URL nobody listens on is tried a few times per status, then dropped and counted."""
    client = twilio(fp)
    client.messages.create(to=PATIENT, from_=FROM, body="x", status_callback="http://127.0.0.1:9/cb?mid=1")
    assert fp.wait_idle()
    webhooks = fp.stats()["webhooks"]
    assert (webhooks["sms_status_dropped"], webhooks["sms_status_failed_attempts"]) == (2, 8)
    assert fp.messages()[0]["status"] == "delivered"


def test_messages_list_and_fetch_parse_in_the_sdk(fp: FakeProvider) -> None:
    """`messages.list(to=, date_sent_after=)` pages through our answers and `fetch` reads one message."""
    client = twilio(fp)
    before = datetime.now(UTC) - timedelta(seconds=2)
    sids = [send_sms(client, to=PATIENT).sid for _ in range(5)]
    other = send_sms(client, to="+15559990000").sid
    assert fp.wait_idle()
    listed = client.messages.list(to=PATIENT, date_sent_after=before, page_size=2)
    assert [m.sid for m in listed] == sids[::-1]  # newest first, over three pages
    assert all(m.status == "delivered" and m.date_sent is not None for m in listed)
    assert client.messages.list(to=PATIENT, date_sent_after=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert [m.sid for m in client.messages.list(from_=FROM, limit=1)] == [other]
    fetched = client.messages(sids[0]).fetch()
    assert (fetched.sid, fetched.to, fetched.body) == (sids[0], PATIENT, "Hi there")
    with pytest.raises(TwilioRestException) as err:
        client.messages("SM" + "0" * 32).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)


def test_inbound_simulation_posts_a_signed_webhook(fp: FakeProvider, receiver: Receiver) -> None:
    """`/_fake/sms/inbound` posts a Twilio-signed form, returns the reply, and can re-deliver a sid."""
    receiver.reply = b"<Response><Message>Thanks</Message></Response>"
    url = f"{receiver.url}/sms/inbound"
    answer = httpx.post(f"{fp.url}/_fake/sms/inbound", json={"url": url, "from": PATIENT, "to": FROM, "body": "2"})
    assert answer.status_code == 200
    out = answer.json()
    assert (out["status"], out["body"]) == (200, "<Response><Message>Thanks</Message></Response>")
    again = httpx.post(
        f"{fp.url}/_fake/sms/inbound",
        json={"url": url, "from": PATIENT, "to": FROM, "body": "2", "message_sid": out["message_sid"]},
    )
    first, second = receiver.wait_for(2)
    form = dict(parse_qsl(first["body"].decode()))
    assert form["MessageSid"] == out["message_sid"] == again.json()["message_sid"]
    assert dict(parse_qsl(second["body"].decode()))["MessageSid"] == out["message_sid"]
    expected = {"AccountSid": SID, "From": PATIENT, "To": FROM, "Body": "2", "NumMedia": "0"}
    assert expected.items() <= form.items() and form["SmsStatus"] == "received"
    signature = first["headers"]["X-Twilio-Signature"]
    assert RequestValidator(TOKEN).validate(url, form, signature)
    assert signature == sign_twilio(url, form, TOKEN)
    assert not RequestValidator(TOKEN).validate(url, {**form, "Body": "3"}, signature)
    assert len(fp.inbound()) == 2


def test_inbound_stop_opts_out_until_start(fp: FakeProvider, receiver: Receiver) -> None:
    """Like Advanced Opt-Out, inbound STOP makes later sends fail with 21610 until START."""
    client = twilio(fp)

    def inbound(body: str) -> dict[str, Any]:
        payload = {"url": f"{receiver.url}/in", "from": PATIENT, "to": FROM, "body": body}
        return dict(httpx.post(f"{fp.url}/_fake/sms/inbound", json=payload).json())

    assert inbound(" stop ")["opt_out_type"] == "STOP"
    with pytest.raises(TwilioRestException) as err:
        send_sms(client)
    assert err.value.code == 21610
    assert inbound("STOP PLEASE")["opt_out_type"] is None
    assert inbound("start")["opt_out_type"] == "START"
    assert send_sms(client).status == "queued"
    assert [f.get("OptOutType") for f in receiver.forms("/in")] == ["STOP", None, "START"]


def test_unreachable_inbound_webhook_is_reported(fp: FakeProvider) -> None:
    """An inbound simulation whose webhook is down answers 502 with a null status."""
    payload = {"url": "http://127.0.0.1:9/in", "from": PATIENT, "to": FROM, "body": "hi"}
    answer = httpx.post(f"{fp.url}/_fake/sms/inbound", json=payload)
    assert (answer.status_code, answer.json()["status"]) == (502, None)


# SendGrid -------------------------------------------------------------------------------------------------


def test_email_send_is_recorded(fp: FakeProvider) -> None:
    """A `Mail` with custom_args answers 202 with X-Message-Id and is recorded with our message id."""
    response = sendgrid(fp).send(mail(message_id="m-7"))
    assert response.status_code == 202
    xid = response.headers["X-Message-Id"]
    [rec] = fp.messages()
    assert rec["channel"] == "email" and rec["provider_id"] == xid and rec["message_id"] == "m-7"
    assert (rec["to"], rec["from"], rec["subject"]) == (
        "pat@example.org",
        "clinic@example.org",
        "How are you?",
    )
    assert (rec["text"], rec["html"], rec["reply_to"]) == ("Plain", "<p>Html</p>", "reply@example.org")
    assert rec["custom_args"] == {"followup_message_id": "m-7"}


def test_email_wrong_key_is_rejected(fp: FakeProvider) -> None:
    """A wrong API key raises UnauthorizedError with a SendGrid error body."""
    with pytest.raises(UnauthorizedError) as err:
        sendgrid(fp, "SG.wrong").send(mail())
    assert err.value.to_dict["errors"][0]["field"] is None
    assert fp.messages() == []


GOOD: dict[str, Any] = {
    "personalizations": [{"to": [{"email": "a@example.org"}]}],
    "from": {"email": "clinic@example.org"},
    "subject": "s",
    "content": [{"type": "text/plain", "value": "t"}],
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"personalizations": []}, "personalizations"),
        ({"personalizations": [{"to": []}]}, "personalizations.0.to"),
        ({"personalizations": [{"to": [{"email": "nope"}]}]}, "personalizations.0.to.0.email"),
        ({"from": {"name": "x"}}, "from.email"),
        ({"subject": None}, "subject"),
        ({"content": []}, "content"),
        ({"custom_args": {"followup_message_id": 5}}, "custom_args"),
    ],
)
def test_email_invalid_body_is_rejected(fp: FakeProvider, change: dict[str, Any], field: str) -> None:
    """Missing parts of a mail send raise BadRequestsError naming the field, and are not recorded."""
    with pytest.raises(BadRequestsError) as err:
        sendgrid(fp).send({**GOOD, **change})
    assert field in [e["field"] for e in err.value.to_dict["errors"]]
    assert fp.messages() == []


@pytest.mark.parametrize(
    ("outcome", "events"),
    [
        (None, ["processed", "delivered"]),
        ("bounce", ["processed", "bounce"]),
        ("dropped", ["processed", "dropped"]),
        ("spamreport", ["processed", "delivered", "spamreport"]),
    ],
)
def test_events_arrive_signed_with_custom_args(
    fp: FakeProvider, receiver: Receiver, outcome: str | None, events: list[str]
) -> None:
    """Events for a send are posted in order, carry custom_args at top level, and verify with EventWebhook."""
    if outcome:
        fp.set_faults(Faults(email_events={"pat@example.org": outcome}))
    xid = sendgrid(fp).send(mail(message_id="m-3")).headers["X-Message-Id"]
    [post] = receiver.wait_for(1)
    payload = post["body"].decode()
    batch = json.loads(payload)
    assert [e["event"] for e in batch] == events
    for event in batch:
        assert event["followup_message_id"] == "m-3" and event["email"] == "pat@example.org"
        assert event["sg_message_id"].startswith(f"{xid}.") and isinstance(event["timestamp"], int)
    assert len({e["sg_event_id"] for e in batch}) == len(batch)
    signature = post["headers"]["X-Twilio-Email-Event-Webhook-Signature"]
    timestamp = post["headers"]["X-Twilio-Email-Event-Webhook-Timestamp"]
    verifier = EventWebhook(DEV_EVENT_PUBLIC_KEY)
    assert verifier.verify_signature(payload, signature, timestamp)
    assert not verifier.verify_signature(payload.replace("m-3", "m-4"), signature, timestamp)
    assert fp.wait_idle()
    assert fp.messages()[0]["status"] == events[-1]


def test_duplicate_events_are_delivered_twice(fp: FakeProvider, receiver: Receiver) -> None:
    """With `duplicate_events`, the same batch (same sg_event_ids) arrives twice."""
    fp.set_faults(Faults(duplicate_events=True))
    sendgrid(fp).send(mail())
    first, second = receiver.wait_for(2)
    assert first["body"] == second["body"]
    assert fp.wait_idle() and len(receiver.posts) == 2


def test_events_are_retried_after_failures(fp: FakeProvider, receiver: Receiver) -> None:
    """A 5xx from the events endpoint is retried until it succeeds."""
    receiver.fail_first = 2
    sendgrid(fp).send(mail())
    assert len(receiver.wait_for(1)) == 1
    assert fp.stats()["webhooks"]["email_events_failed_attempts"] == 2


# Control API and helpers ------------------------------------------------------------------------------------


def test_stats_report_peak_rate_per_sender(fp: FakeProvider) -> None:
    """`/_fake/stats` counts sends and the busiest second per sender."""
    client = twilio(fp)
    for _ in range(4):
        send_sms(client)
    client.messages.create(to=PATIENT, from_="+15550000002", body="x")
    sendgrid(fp).send(mail())
    assert fp.wait_idle()
    stats = httpx.get(f"{fp.url}/_fake/stats").json()
    assert (stats["sms"], stats["email"], stats["requests"]) == (5, 1, 6)
    assert stats["max_per_second_by_sender"] == {FROM: 4, "+15550000002": 1, "clinic@example.org": 1}
    assert stats["by_status"] == {"delivered": 6}


@pytest.mark.parametrize(
    ("times", "peak"),
    [
        ([], 0),
        ([0.0, 0.5, 0.99, 1.5], 3),
        ([0.0, 1.0, 2.0], 1),  # a window is (t - 1 s, t]
        ([0.0, 0.1, 2.0, 2.1, 2.2], 3),
    ],
)
def test_sliding_window_max(times: list[float], peak: int) -> None:
    """The per-sender peak is the largest count in any one-second window."""
    window = SlidingWindowMax()
    for t in times:
        window.add(t)
    assert window.max == peak


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("€" * 80, 1),  # extension characters count twice
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("é" * 160, 1),  # é is in GSM-7
        ("ê" * 70, 1),  # ê is not: UCS-2
        ("ê" * 71, 2),
        ("😀" * 35, 1),  # two UTF-16 units each
    ],
)
def test_num_segments(body: str, segments: int) -> None:
    """Segments follow GSM-7 (160/153) or UCS-2 (70/67) rules."""
    assert num_segments(body) == segments


def test_faults_json_round_trip_and_validation(fp: FakeProvider) -> None:
    """`POST /_fake/faults` sets faults from JSON, `GET` shows them, and bad JSON is refused."""
    wanted = {
        "latency_ms": 0,
        "error_rate": 0.25,
        "sms_error_codes": {PATIENT: 21610},
        "duplicate_events": True,
    }
    assert httpx.post(f"{fp.url}/_fake/faults", json=wanted).status_code == 200
    shown = httpx.get(f"{fp.url}/_fake/faults").json()
    assert {k: shown[k] for k in wanted} == wanted
    assert fp.faults().sms_error_codes == {PATIENT: 21610}
    for bad in ({"nope": 1}, {"error_rate": 2}, {"burst_429": "3"}, {"email_events": {"a@b.c": "lost"}}):
        assert httpx.post(f"{fp.url}/_fake/faults", json=bad).status_code == 400


def test_fault_plan_burst_comes_before_random_errors() -> None:
    """The 429 burst is served first, then seeded errors take over."""
    plan = FaultPlan(seed=1)
    plan.set(Faults(burst_429=2, error_rate=1.0))
    assert [plan.decide().status for _ in range(3)][:2] == [429, 429]
    assert plan.decide().status in (500, 503)


def test_delete_and_reset_clear_state(fp: FakeProvider) -> None:
    """`DELETE /_fake/messages` forgets sends; `reset()` also clears faults."""
    send_sms(twilio(fp))
    fp.set_faults(Faults(latency_ms=5))
    assert httpx.delete(f"{fp.url}/_fake/messages").status_code == 200
    assert httpx.get(f"{fp.url}/_fake/messages").json() == [] and fp.stats()["sms"] == 0
    assert fp.faults().latency_ms == 5
    fp.reset()
    assert fp.faults() == Faults()


def test_stop_closes_keepalive_connections() -> None:
    """After `stop()`, the port refuses connections and none of the fake's threads is left running."""
    before = set(threading.enumerate())
    provider = FakeProvider(twilio_account_sid=SID, twilio_auth_token=TOKEN).start()
    send_sms(twilio(provider))  # leaves a keep-alive connection, and its handler thread, open
    assert len(set(threading.enumerate()) - before) >= 2 + 4  # accept loop, handler, webhook workers
    provider.stop()
    deadline = time.monotonic() + 2
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{provider.url}/_fake/health")


def test_serve_forever_runs_until_stopped() -> None:
    """`serve_forever()` serves in the calling thread and returns once `stop()` is called elsewhere."""
    provider = FakeProvider(twilio_account_sid=SID, twilio_auth_token=TOKEN)
    thread = threading.Thread(target=provider.serve_forever)
    thread.start()
    for _ in range(100):
        try:
            url = provider.url
            break
        except RuntimeError:
            time.sleep(0.01)
    assert httpx.get(f"{url}/_fake/health").json() == {"ok": True}
    provider.stop()
    thread.join(timeout=2)
    assert not thread.is_alive()


def test_cli_serves_and_prints_where(tmp_path: Any) -> None:
    """`python -m followup.fakeprovider` prints its URL and dev credentials and answers the SDK."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUP_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "followup.fakeprovider", "--port", "0", "--latency-ms", "1", "--events-url", ""],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = first.rsplit(" ", 1)[-1].strip()
        banner = [proc.stdout.readline() for _ in range(11)]
        exports = dict(line.split("export ", 1)[1].strip().split("=", 1) for line in banner if "export " in line)
        assert set(exports) == {
            "FOLLOWUP_TWILIO__ACCOUNT_SID",
            "FOLLOWUP_TWILIO__AUTH_TOKEN",
            "FOLLOWUP_SENDGRID__API_KEY",
            "FOLLOWUP_TWILIO__API_BASE",
            "FOLLOWUP_TWILIO__FROM_NUMBER",
            "FOLLOWUP_SENDGRID__API_BASE",
        }
        assert exports["FOLLOWUP_TWILIO__API_BASE"] == exports["FOLLOWUP_SENDGRID__API_BASE"] == url
        client = Client(exports["FOLLOWUP_TWILIO__ACCOUNT_SID"], exports["FOLLOWUP_TWILIO__AUTH_TOKEN"])
        client.api.base_url = url
        assert client.messages.create(to=PATIENT, from_=FROM, body="x").status == "queued"
        assert httpx.get(f"{url}/_fake/faults").json()["latency_ms"] == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
