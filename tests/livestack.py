"""A whole stack on loopback for end-to-end tests: the app under uvicorn (dispatcher on) and the fake provider,
with the real Twilio and SendGrid SDKs talking to it over HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import uvicorn
from conftest import make_settings
from factories import triage_body

from followup.fakeprovider import (
    DEV_SENDGRID_API_KEY,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    FakeProvider,
)
from followup.runtime import Runtime, build_runtime
from followup.services import inbound
from followup.services.tokens import create_token
from followup.web.app import create_app

CLINIC_NUMBER = "+13105550100"
INBOUND_PASSWORD = "inbound-secret"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    rt: Runtime
    fake: FakeProvider
    base: str
    api: httpx.Client
    token: str

    def triage(self, **over: Any) -> int:
        """Enroll a patient who lives where it is daytime now (so the welcome goes out at once)."""
        r = self.api.post("/api/triage", json=triage_body(**{"timezone": daytime_zone(), **over}))
        assert r.status_code == 201, r.text
        return int(r.json()["patient_id"])

    def sent_to(self, to: str) -> list[dict[str, Any]]:
        return [m for m in self.fake.messages() if m["to"] == to]

    def sms_from_patient(self, sender: str, body: str, message_sid: str | None = None) -> dict[str, Any]:
        """The fake provider signs and posts an inbound SMS to our webhook, as Twilio would."""
        payload = {"url": f"{self.base}/webhooks/twilio/sms", "from": sender, "to": CLINIC_NUMBER, "body": body}
        if message_sid:
            payload["message_sid"] = message_sid
        r = httpx.post(f"{self.fake.url}/_fake/sms/inbound", json=payload, timeout=60)
        r.raise_for_status()
        out = dict(r.json())
        # The webhook answers before a reply worker acts: wait for the worker, as a patient waits for an answer.
        if out.get("status") == 200 and out.get("message_sid"):
            key = f"twilio:{out['message_sid']}"
            eventually(lambda: inbound.acted_on(self.rt, key), what="a reply worker to act on the reply")
        return out

    def replies_acted_on(self) -> bool:
        """Whether every stored reply has been acted on by a reply worker."""
        return inbound.pending_count(self.rt) == 0


def eventually(fn: Callable[[], T | None], what: str = "condition", timeout: float = 15.0) -> T:
    """Poll `fn` until it returns something truthy; fail naming `what` after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def daytime_zone() -> str:
    """An IANA zone where it is now about noon: live tests run on the real clock, and a patient whose local time is
    outside the sending window would (rightly) not get their welcome until morning."""
    offset = 12 - datetime.now(UTC).hour
    if offset > 14:
        offset -= 24
    if offset < -12:
        offset += 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"  # POSIX signs


@contextmanager
def live_stack(db_url: str, **overrides: dict[str, Any]) -> Iterator[Live]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    fake = FakeProvider(events_url=f"{base}/webhooks/sendgrid/events").start()
    settings = make_settings(db_url).with_overrides(
        server={"public_url": base},
        twilio={
            "account_sid": DEV_TWILIO_ACCOUNT_SID,
            "auth_token": DEV_TWILIO_AUTH_TOKEN,
            "from_number": CLINIC_NUMBER,
            "api_base": fake.url,
            "timeout_seconds": 5.0,
        },
        sendgrid={"api_key": DEV_SENDGRID_API_KEY, "api_base": fake.url, "inbound_password": INBOUND_PASSWORD},
        dispatch={"interval_seconds": 0.2, "per_sender_per_second": 1000.0},
    )
    if overrides:
        settings = settings.with_overrides(**overrides)
    rt = build_runtime(settings)
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime=rt), host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # The app loads the red-flag detector (rules and learned layer, seconds; far more on a loaded machine) before it
    # takes traffic.
    eventually(lambda: server.started, "the app to start", timeout=90)
    token = create_token(rt, "e2e")[1]
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    try:
        yield Live(rt, fake, base, api, token)
    finally:
        api.close()
        server.should_exit = True
        thread.join(timeout=10)
        fake.stop()
        rt.db.dispose()
