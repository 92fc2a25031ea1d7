"""SMS through the Twilio SDK. The only module that imports `twilio` for sending."""

from __future__ import annotations

import os
import threading
from datetime import datetime
from typing import Any

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from followup.transports.base import Outgoing, PermanentSendError, RetryableSendError, Sent

AUTH_RETRY_SECONDS = 600.0
TWILIO_API = "https://api.twilio.com"
RETRYABLE_CODES = {"20429", "21611", "30001", "20500", "20503"}


class TwilioSms:
    name = "twilio"
    channel = "sms"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        *,
        messaging_service_sid: str = "",
        api_base: str = "",
        timeout: float = 10.0,
        status_callback_base: str = "",
    ) -> None:
        # With a Messaging Service, Twilio picks the number from the service's pool: the service is the sender
        # that pacing counts against.
        self.from_number, self.service = from_number, messaging_service_sid
        self.sender = messaging_service_sid or from_number
        self._sid, self._token, self._api_base, self._timeout = account_sid, auth_token, api_base, timeout
        self._callback_base = status_callback_base.rstrip("/")
        self._local = threading.local()

    def _client(self) -> Client:
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            http = _HeaderKeepingHttpClient(timeout=self._timeout, pool_connections=True)
            _environment_once(http, self._api_base or TWILIO_API)
            client = Client(self._sid, self._token, http_client=http)
            if self._api_base:
                client.api.base_url = self._api_base.rstrip("/")
            self._local.client = client
        return client

    def warm(self) -> None:
        """Build this thread's client and load the SDK's message module now, so that a paced send's first request
        leaves at its slot: a first send spent that setup after its slot, and sends bunched at the provider."""
        if getattr(self._local, "client", None) is None:
            _ = self._client().messages

    def status_callback(self, message_id: int) -> str:
        return f"{self._callback_base}/webhooks/twilio/status?mid={message_id}"

    def send(self, msg: Outgoing) -> Sent:
        client = self._client()
        kwargs = {"to": msg.to, "body": msg.body}
        if self.service:
            kwargs["messaging_service_sid"] = self.service
        else:
            kwargs["from_"] = self.from_number
        if self._callback_base:
            kwargs["status_callback"] = self.status_callback(msg.message_id)
        try:
            created = client.messages.create(**kwargs)
        except TwilioRestException as exc:
            raise _translate(exc, client) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            # A read timeout may come after Twilio accepted the message: reconcile before any retry.
            ambiguous = not isinstance(exc, requests.ConnectTimeout)
            raise RetryableSendError(f"twilio unreachable: {type(exc).__name__}", ambiguous=ambiguous) from exc
        except TwilioException as exc:
            raise RetryableSendError(f"twilio error: {type(exc).__name__}") from exc
        return Sent(provider_id=str(created.sid))

    def find_sent(self, msg: Outgoing, since: datetime) -> str | None:
        client = self._client()
        # Not filtered on DateSent: a message still queued at Twilio has no sent date yet. The newest 50 for this
        # recipient, created since the attempt began, are enough for a recent interrupted send.
        try:
            # Through a service the number is picked from a pool: look by recipient, and keep the service's.
            if self.service:
                listed = client.messages.list(to=msg.to, limit=50)
                found = [m for m in listed if m.messaging_service_sid == self.service]
            else:
                found = client.messages.list(to=msg.to, from_=self.from_number, limit=50)
        except (TwilioException, requests.RequestException) as exc:
            raise RetryableSendError(f"twilio lookup failed: {type(exc).__name__}") from exc
        for m in found:
            created = m.date_created
            if created is not None and created < since:
                continue
            if (m.body or "").strip() == msg.body.strip():
                return str(m.sid)
        return None


def _translate(exc: TwilioRestException, client: Client) -> RetryableSendError | PermanentSendError:
    code = str(exc.code) if exc.code is not None else None
    status = int(exc.status or 0)
    reason = f"twilio {status} code {code}"
    if status == 429 or status >= 500 or code in RETRYABLE_CODES:
        return RetryableSendError(reason, code=code or str(status), retry_after=_retry_after(client))
    if status in (401, 403):  # our credentials, not the message: hold and retry slowly while someone fixes them
        return RetryableSendError(
            f"{reason}: credentials refused; check twilio settings",
            code=code or str(status),
            retry_after=AUTH_RETRY_SECONDS,
        )
    return PermanentSendError(reason, code=code or str(status))


def _environment_once(http: TwilioHttpClient, base: str) -> None:
    """Read the proxy and CA-bundle environment variables once, for the one host this client calls, instead of on
    every request: requests scans the whole environment (and looks for ~/.netrc) per request when `trust_env` is
    on, which was a fifth of each send's CPU at 64 threads (bench/README.md, "Dispatch at 64 threads")."""
    session = http.session
    if session is None:
        return
    session.proxies.update(requests.utils.get_environ_proxies(base))  # honours NO_PROXY for this host
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False


class _HeaderKeepingHttpClient(TwilioHttpClient):
    """Keeps the last response's headers: the SDK's exception drops Retry-After. One per thread."""

    last_headers: dict[str, str] | None = None

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self.last_headers = None
        response = super().request(*args, **kwargs)
        self.last_headers = dict(response.headers or {})
        return response


def _retry_after(client: Client) -> float | None:
    headers = getattr(client.http_client, "last_headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
