"""Email through the SendGrid SDK. The only module that imports `sendgrid` for sending."""

from __future__ import annotations

import socket
import urllib.error
from datetime import datetime

from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Content, CustomArg, From, Mail, ReplyTo

from followup.transports.base import (
    LookupUnavailable,
    Outgoing,
    PermanentSendError,
    RetryableSendError,
    Sent,
)

MESSAGE_ID_ARG = "followup_message_id"


class SendgridEmail:
    name = "sendgrid"
    channel = "email"

    def __init__(
        self, api_key: str, from_email: str, from_name: str = "", *, api_base: str = "", timeout: float = 10.0
    ) -> None:
        self.sender = from_email
        self._from_name = from_name
        kwargs = {"host": api_base.rstrip("/")} if api_base else {}
        self._api_key, self._kwargs, self._timeout = api_key, kwargs, timeout

    def _client(self) -> SendGridAPIClient:
        # A client per call: python_http_client builds URLs by mutating shared state, unsafe across threads.
        client = SendGridAPIClient(self._api_key, **self._kwargs)
        client.client.timeout = self._timeout
        return client

    def build(self, msg: Outgoing) -> Mail:
        mail = Mail(
            from_email=From(self.sender, self._from_name or None),
            to_emails=msg.to,
            subject=msg.subject or "",
            plain_text_content=Content("text/plain", msg.body),
        )
        if msg.html:
            mail.add_content(Content("text/html", msg.html))
        if msg.reply_to:
            mail.reply_to = ReplyTo(msg.reply_to)
        # Only our opaque id: SendGrid keeps custom args for long, and even the message kind ("escalation") next to
        # the address would tell it something about the patient's health.
        mail.add_custom_arg(CustomArg(MESSAGE_ID_ARG, str(msg.message_id)))
        return mail

    def send(self, msg: Outgoing) -> Sent:
        try:
            response = self._client().send(self.build(msg))
        except http_errors.HTTPError as exc:
            raise _translate(exc) from exc
        except TimeoutError as exc:
            raise RetryableSendError("sendgrid timed out", ambiguous=True) from exc
        except urllib.error.URLError as exc:
            ambiguous = isinstance(exc.reason, TimeoutError | socket.timeout)
            raise RetryableSendError("sendgrid unreachable", ambiguous=ambiguous) from exc
        except OSError as exc:
            raise RetryableSendError(f"sendgrid connection error: {type(exc).__name__}", ambiguous=True) from exc
        headers = response.headers
        provider_id = (headers.get("X-Message-Id") if headers is not None else None) or ""
        return Sent(provider_id=str(provider_id))

    def find_sent(self, msg: Outgoing, since: datetime) -> str | None:
        raise LookupUnavailable("SendGrid has no per-message lookup; delivery events settle it")


def _translate(exc: http_errors.HTTPError) -> RetryableSendError | PermanentSendError:
    status = int(getattr(exc, "status_code", 0) or 0)
    reason = f"sendgrid {status}"
    if status == 429 or status >= 500:
        headers = getattr(exc, "headers", None) or {}
        raw = headers.get("Retry-After") if hasattr(headers, "get") else None
        try:
            retry_after = float(raw) if raw else None
        except ValueError:
            retry_after = None
        return RetryableSendError(reason, code=str(status), retry_after=retry_after)
    if status in (401, 403):  # our API key, not the message: hold and retry slowly while someone fixes it
        return RetryableSendError(
            f"{reason}: API key refused; check sendgrid settings", code=str(status), retry_after=600.0
        )
    return PermanentSendError(reason, code=str(status))
