"""`FakeProvider`: the fake Twilio + SendGrid server, its routes and its `/_fake/*` control API."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any

from followup.fakeprovider.dev_keys import DEV_SENDGRID_API_KEY, DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN
from followup.fakeprovider.dispatch import Poster, Scheduler, Webhooks
from followup.fakeprovider.faults import FaultPlan, Faults, Verdict
from followup.fakeprovider.sendgrid_api import SendGridApi, sendgrid_error
from followup.fakeprovider.server import FakeHTTPServer
from followup.fakeprovider.store import Store
from followup.fakeprovider.twilio_api import TwilioApi, twilio_error
from followup.fakeprovider.voice_api import VoiceApi
from followup.fakeprovider.wire import Request, Response, json_response

_MESSAGES = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
_CALLS = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Calls\.json$")
_MESSAGE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json$")
log = logging.getLogger("followup.fakeprovider")
_INBOUND_TIMEOUT_S = 15.0  # how long Twilio waits for an incoming-message webhook


class FakeProvider:
    """A real HTTP server that answers like Twilio's Messages API and SendGrid's mail send.

    Point the real SDKs at `url`; inspect what was sent with `messages()`; inject trouble with
    `set_faults()`. Status callbacks and Event Webhook posts go out from background threads.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        twilio_account_sid: str = DEV_TWILIO_ACCOUNT_SID,
        twilio_auth_token: str = DEV_TWILIO_AUTH_TOKEN,
        sendgrid_api_key: str = DEV_SENDGRID_API_KEY,
        events_url: str | None = None,
        status_delay_s: float = 0.0,
        seed: int = 0,
        callback_attempts: int = 4,
        callback_backoff_s: float = 0.25,
        webhook_workers: int = 4,
        webhook_timeout_s: float = 5.0,
    ) -> None:
        self._address = (host, port)
        self._stopping = threading.Event()
        self._server: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self.store = Store()
        self.fault_plan = FaultPlan(seed)
        self.scheduler = Scheduler(webhook_workers)
        webhooks = Webhooks(self.store, Poster(webhook_timeout_s), callback_attempts, callback_backoff_s)
        self.twilio = TwilioApi(
            account_sid=twilio_account_sid,
            auth_token=twilio_auth_token,
            store=self.store,
            faults=self.fault_plan,
            scheduler=self.scheduler,
            webhooks=webhooks,
            inbound_poster=Poster(_INBOUND_TIMEOUT_S),
            status_delay_s=status_delay_s,
        )
        self.voice = VoiceApi(twilio_account_sid, twilio_auth_token, Poster(_INBOUND_TIMEOUT_S))
        self.sendgrid = SendGridApi(
            api_key=sendgrid_api_key,
            events_url=events_url,
            store=self.store,
            faults=self.fault_plan,
            scheduler=self.scheduler,
            webhooks=webhooks,
            status_delay_s=status_delay_s,
        )

    # Lifecycle ----------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeProvider is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeProvider:
        """Serve in a background daemon thread; returns self."""
        server = self._bind()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fakeprovider-http", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until `stop()` from another thread or KeyboardInterrupt."""
        server = self._bind()
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, end open connections and webhook workers. Safe to call twice."""
        server = self._server
        if server is None or self._closed:
            return
        self._stopping.set()  # releases stalled and delayed answers
        server.shutdown()
        if self._thread is not None:
            self._thread.join()
            self._close()

    def _bind(self) -> FakeHTTPServer:
        if self._server is not None:
            raise RuntimeError("FakeProvider was already started")
        self._server = FakeHTTPServer(self._address, self.handle, self._stopping)
        self.scheduler.start()
        return self._server

    def _close(self) -> None:
        with self._close_lock:
            if self._closed or self._server is None:
                return
            self._closed = True
        self._stopping.set()
        self._server.close_connections()
        self._server.server_close()
        self.scheduler.stop()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Inspection and control (the same as the /_fake/* endpoints) --------------------------------------------

    def messages(self) -> list[dict[str, Any]]:
        """Accepted sends, oldest first; rejected ones never appear."""
        return self.store.public_messages()

    def inbound(self) -> list[dict[str, Any]]:
        """Inbound SMS simulated through `POST /_fake/sms/inbound`."""
        return self.store.inbound()

    def calls(self) -> list[dict[str, Any]]:
        """Voice calls placed (Calls.json), oldest first, with their TwiML, what they say and the callbacks posted."""
        return self.voice.calls()

    def press(self, sid: str, digits: str) -> dict[str, Any] | None:
        """The callee pressed `digits`: the signed <Gather> callback is posted; returns what the service answered."""
        return self.voice.press(sid, digits)

    def end_call(self, sid: str, status: str = "completed") -> dict[str, Any] | None:
        """The call ended with `status` (no-answer, busy, failed, completed): the signed status callback is posted."""
        return self.voice.end(sid, status)

    def stats(self) -> dict[str, Any]:
        return self.store.stats()

    def faults(self) -> Faults:
        return self.fault_plan.current()

    def set_faults(self, faults: Faults) -> None:
        self.fault_plan.set(faults)

    def reset(self) -> None:
        """Forget messages, counters, opt-outs, pending webhooks and faults (the seed starts over)."""
        self.scheduler.clear()
        self.store.clear()
        self.voice.clear()
        self.fault_plan.reset()

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued status callback and event post is done (or dropped); False on timeout."""
        return self.scheduler.wait_idle(timeout_s)

    # Routing ------------------------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        if req.path.startswith("/_fake/"):
            return self._control(req)
        if req.path.startswith("/2010-04-01/"):
            return self._api(req, "twilio", self._twilio)
        if req.path.startswith("/v3/"):
            return self._api(req, "sendgrid", self._sendgrid)
        return json_response(404, {"error": "not found"})

    def _api(self, req: Request, api: str, route: Any) -> Response:
        self.store.count_request()
        latency_ms = self.fault_plan.peek().latency_ms
        if latency_ms:
            self._stopping.wait(latency_ms / 1000)
        resp: Response = route(req)
        self.store.count_response(resp.status)
        log.debug("%s %s -> %d", api, req.method, resp.status)  # never the path: it may hold a number
        return resp

    def _twilio(self, req: Request) -> Response:
        calls = _CALLS.match(req.path)
        if calls is not None:
            denied = self.twilio.check_auth(req, calls.group(1))
            if denied:
                return denied
            if req.method != "POST":
                return twilio_error(405, 20004)
            verdict = self.fault_plan.decide()
            if verdict.status:
                return _twilio_fault(verdict)
            return self.voice.create(req)
        one = _MESSAGE.match(req.path)
        many = None if one else _MESSAGES.match(req.path)
        match = one or many
        if match is None:
            return twilio_error(404, 20404)
        denied = self.twilio.check_auth(req, match.group(1))
        if denied:
            return denied
        verdict = self.fault_plan.decide()
        if verdict.status:
            return _twilio_fault(verdict)
        if one and req.method == "GET":
            resp = self.twilio.fetch(one.group(2))
        elif many and req.method == "POST":
            resp = self.twilio.create(req)
        elif many and req.method == "GET":
            resp = self.twilio.list(req)
        else:
            resp = twilio_error(405, 20004)
        resp.stall_s = verdict.stall_s
        return resp

    def _sendgrid(self, req: Request) -> Response:
        if req.path != "/v3/mail/send":
            return sendgrid_error(404, "not found")
        denied = self.sendgrid.check_auth(req)
        if denied:
            return denied
        if req.method != "POST":
            return sendgrid_error(405, "method not allowed")
        verdict = self.fault_plan.decide()
        if verdict.status:
            return _sendgrid_fault(verdict)
        resp = self.sendgrid.send(req)
        resp.stall_s = verdict.stall_s
        return resp

    def _control(self, req: Request) -> Response:
        route = (req.method, req.path.rstrip("/"))
        if route == ("GET", "/_fake/messages"):
            return json_response(200, self.messages())
        if route == ("DELETE", "/_fake/messages"):
            self.store.clear_messages()
            return json_response(200, {"cleared": True})
        if route == ("GET", "/_fake/inbound"):
            return json_response(200, self.inbound())
        if route == ("GET", "/_fake/stats"):
            return json_response(200, self.stats())
        if route == ("GET", "/_fake/faults"):
            return json_response(200, self.faults().to_dict())
        if route == ("POST", "/_fake/faults"):
            try:
                faults = Faults.from_dict(json.loads(req.body or b"{}"))
            except ValueError as exc:
                return json_response(400, {"error": str(exc)})
            self.set_faults(faults)
            return json_response(200, self.faults().to_dict())
        if route == ("DELETE", "/_fake/faults"):
            self.set_faults(Faults())
            return json_response(200, self.faults().to_dict())
        if route == ("POST", "/_fake/sms/inbound"):
            return self.twilio.simulate_inbound(req)
        if route == ("GET", "/_fake/calls"):
            return json_response(200, self.calls())
        if route == ("POST", "/_fake/calls/press"):
            return self.voice.control(req, "press")
        if route == ("POST", "/_fake/calls/end"):
            return self.voice.control(req, "end")
        if route == ("POST", "/_fake/reset"):
            self.reset()
            return json_response(200, {"reset": True})
        if route == ("GET", "/_fake/health"):
            return json_response(200, {"ok": True})
        return json_response(404, {"error": "not found"})


def _twilio_fault(verdict: Verdict) -> Response:
    if verdict.status == 429:
        return twilio_error(429, 20429, {"Retry-After": str(verdict.faults.retry_after_s)})
    return twilio_error(verdict.status, 20500 if verdict.status == 500 else 20503)


def _sendgrid_fault(verdict: Verdict) -> Response:
    if verdict.status == 429:
        wait = verdict.faults.retry_after_s
        resp = sendgrid_error(429, "too many requests")
        resp.headers.update(
            {
                "Retry-After": str(wait),
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + wait),
            }
        )
        return resp
    message = "internal error" if verdict.status == 500 else "service unavailable"
    return sendgrid_error(verdict.status, message)
