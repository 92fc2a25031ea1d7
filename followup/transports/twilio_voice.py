"""Phone calls through Twilio's Voice API: one small interface (`Caller`), the SDK implementation and a recording
fake. The only module that imports `twilio` for calling; the TwiML the call speaks is built here too."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client
from twilio.twiml.voice_response import Gather, VoiceResponse

from followup.transports.base import PermanentSendError, RetryableSendError, SendError
from followup.transports.twilio_sms import _HeaderKeepingHttpClient, _translate

# Twilio's <Say> languages for the clinic's staff language.
SAY_LANGUAGE = {"en": "en-US", "es": "es-US"}


@dataclass(frozen=True)
class CallRequest:
    call_id: int  # our VoiceCall row
    to: str
    say: str  # the alert, then "press 1 to acknowledge": no name, no diagnosis
    no_key: str  # said when no key was pressed before the call ends
    language: str  # en | es
    gather_action: str  # our signed callback URL for the key pressed
    status_callback: str  # our callback URL for how the call ended
    gather_timeout: int = 10


def call_twiml(req: CallRequest) -> str:
    """<Gather numDigits=1> around the alert (said twice), then a closing line if no key came."""
    resp = VoiceResponse()
    lang = SAY_LANGUAGE.get(req.language, "en-US")
    gather = Gather(num_digits=1, action=req.gather_action, method="POST", timeout=req.gather_timeout)
    gather.say(req.say, language=lang)
    gather.pause(length=1)
    gather.say(req.say, language=lang)
    resp.append(gather)
    resp.say(req.no_key, language=lang)
    return str(resp)


def say_twiml(text: str, language: str) -> str:
    """The answer to a key press: one sentence, then the call ends."""
    resp = VoiceResponse()
    resp.say(text, language=SAY_LANGUAGE.get(language, "en-US"))
    resp.hangup()
    return str(resp)


class Caller(Protocol):
    def call(self, req: CallRequest) -> str:
        """Place the call; returns the provider's call id. Raises SendError (retryable or permanent)."""
        ...


class TwilioVoice:
    def __init__(
        self, account_sid: str, auth_token: str, from_number: str, *, api_base: str = "", timeout: float = 10.0
    ):
        self.sender = from_number
        self._sid, self._token, self._api_base, self._timeout = account_sid, auth_token, api_base, timeout
        self._local = threading.local()

    def _client(self) -> Client:
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            client = Client(self._sid, self._token, http_client=_HeaderKeepingHttpClient(timeout=self._timeout))
            if self._api_base:
                client.api.base_url = self._api_base.rstrip("/")
            self._local.client = client
        return client

    def call(self, req: CallRequest) -> str:
        client = self._client()
        try:
            created = client.calls.create(
                to=req.to,
                from_=self.sender,
                twiml=call_twiml(req),
                status_callback=req.status_callback,
                status_callback_event=["completed"],
                status_callback_method="POST",
                timeout=30,  # seconds of ringing before Twilio gives up ("no-answer")
            )
        except TwilioRestException as exc:
            raise _translate(exc, client) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RetryableSendError(f"twilio unreachable: {type(exc).__name__}", ambiguous=True) from exc
        except TwilioException as exc:
            raise RetryableSendError(f"twilio error: {type(exc).__name__}") from exc
        return str(created.sid)


@dataclass
class RecordingCaller:
    """Keeps every call asked for; raises the errors queued with `fail_next`."""

    calls: list[CallRequest] = field(default_factory=list)
    failures: list[SendError] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, *errors: SendError) -> None:
        self.failures.extend(errors)

    def call(self, req: CallRequest) -> str:
        with self._lock:
            if self.failures:
                raise self.failures.pop(0)
            self.calls.append(req)
            return f"CA{len(self.calls):032d}"


__all__ = ["CallRequest", "Caller", "PermanentSendError", "RecordingCaller", "TwilioVoice", "call_twiml", "say_twiml"]
