"""Abuse limits at the edge of the app, as pure ASGI middleware.

- `BodyLimit`: a request body over the limit gets 413 before it is read whole: at once when Content-Length says
  so, otherwise (a chunked upload) as soon as the bytes streamed in pass the limit.
- `SenderLimits`: a token bucket per sender, so one sender flooding cannot starve the others or raise alerts
  without end. The buckets are rows in the database (followup/services/limits.py), shared by every web process:
  with `serve --workers N` a sender still gets its limit once, not N times. Inbound SMS are counted per From
  number, and only when Twilio's signature is valid (a forged post must not use up a patient's bucket; the route
  refuses it anyway). Intake form posts are counted per client address (an IPv6 client per /64, what one household
  or one attacker gets).

Over the limit, an inbound SMS still goes to the route, marked as a flood (`scope[FLOOD]`): it is stored, never
dropped (issue 11, finding 9: "I can't breathe" as the 14th text in a minute vanished). It is read for red flags
while its number's reading budget lasts (`limits.flood_reads_per_hour`, a second bucket), else stored unread for
staff; nothing is sent back but escalation advice, and the answer is an empty TwiML (200), not 429: Twilio does
not retry a message webhook either way, a 4xx/5xx would make Twilio call the number's fallback URL with the same
flood, and an empty answer tells a looping auto-responder nothing. The intake form gets 429 with Retry-After.
Each flood is logged and audited once, when it starts, by a keyed hash of the sender: never the number or the
address.
"""

from __future__ import annotations

import html
import ipaddress
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from followup.content.pages import page_texts
from followup.core.limits import Decision, Limit
from followup.core.replies import normalise_sender
from followup.runtime import Runtime
from followup.services import audit
from followup.services.limits import SharedLimits
from followup.web.signatures import twilio_valid

log = logging.getLogger("followup.limits")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INBOUND_SMS = "/webhooks/twilio/sms"
INBOUND_EMAIL = "/webhooks/sendgrid/inbound"
INTAKE = "/intake"
FLOOD = "followup.flood"  # scope key: "read" (within the reading budget) or "unread"


class BodyTooLarge(Exception):
    """Raised from `receive` once a body passes its limit; BodyLimit turns it into a 413."""


class BodyLimit:
    """Refuse request bodies over `default` bytes (`per_path` for paths with their own limit) with 413."""

    def __init__(self, app: ASGIApp, default: int, per_path: dict[str, int] | None = None) -> None:
        self.app, self.default, self.per_path = app, default, dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default)
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _answer(send, 413, b"request body too large", close=True)
            return
        received, over, started = 0, False, False

        async def counted() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge(f"more than {limit} bytes")
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if over:
                return  # whatever the app makes of a cut body (a 400, an error page) is replaced by the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _answer(send, 413, b"request body too large", close=True)


class SenderLimits:
    """Per-sender limits on inbound SMS and intake form posts (see the module docstring)."""

    def __init__(self, app: ASGIApp, rt: Runtime) -> None:
        self.app, self.rt = app, rt
        self.buckets = SharedLimits(rt)
        limits = rt.settings.limits
        self.sms = Limit.per_minute(limits.inbound_sms_per_minute)
        self.flood_reads = Limit.per_hour(limits.flood_reads_per_hour)  # all at once, then refilled over the hour
        self.intake = Limit.per_minute(limits.intake_per_minute)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in (INBOUND_SMS, INTAKE):
            await self.app(scope, receive, send)
            return
        if scope["path"] == INTAKE:
            client = client_key(scope)
            decision = await run_in_threadpool(self.buckets.take, "intake", self.intake, client, self._now())
            if not decision.allowed:
                await self._refused("intake", client, decision)
                await _answer(
                    send,
                    429,
                    self._busy_page(),
                    "text/html; charset=utf-8",
                    {"retry-after": str(self.intake.retry_after)},
                )
                return
            await self._allowed("intake", client, decision)
            await self.app(scope, receive, send)
            return
        body, replay = await _buffer(receive)
        sender = await self._signed_sender(scope, body)
        if sender is not None:
            decision, read = await run_in_threadpool(self._take_sms, sender)
            if not decision.allowed:
                await self._refused("inbound_sms", sender, decision)
                scope[FLOOD] = "read" if read else "unread"
            else:
                await self._allowed("inbound_sms", sender, decision)
        await self.app(scope, replay, send)

    def _now(self) -> float:
        return self.rt.clock.now().timestamp()

    def _take_sms(self, sender: str) -> tuple[Decision, bool]:
        """A token from the sender's SMS bucket; past it, whether its flood reading budget still lets it be read."""
        now = self._now()
        decision = self.buckets.take("inbound_sms", self.sms, sender, now)
        if decision.allowed:
            return decision, True
        return decision, self.buckets.take("flood_reads", self.flood_reads, sender, now).allowed

    async def _signed_sender(self, scope: Scope, body: bytes) -> str | None:
        """The From number of a validly signed inbound SMS, normalised as the route does; else None."""
        request = Request(scope, _once(body))
        try:
            form = await request.form()
        except Exception:  # not a form at all: the route answers it
            return None
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        if len(fields) != len(form.multi_items()) or not twilio_valid(self.rt.settings, request, fields):
            return None
        return normalise_sender(fields.get("From", ""), self.rt.settings.clinic.default_region)

    def sender_ref(self, sender: str) -> str:
        """A keyed hash of the sender: the same sender gives the same ref, and no one can get the number back."""
        return self.rt.links.keyed_hash(sender, 12)

    async def _refused(self, what: str, sender: str, decision: Decision) -> None:
        if not decision.flood_started:
            return
        ref = self.sender_ref(sender)
        log.warning("%s from sender %s over its limit: refusing until it slows down", what, ref)
        await run_in_threadpool(self._audit, f"limits.{what}_flood_started", ref)

    async def _allowed(self, what: str, sender: str, decision: Decision) -> None:
        if decision.flood_ended:
            ref = self.sender_ref(sender)
            log.info("%s from sender %s under its limit again after %d refused", what, ref, decision.flood_ended)
            await run_in_threadpool(self._audit, f"limits.{what}_flood_ended", ref, decision.flood_ended)

    def _audit(self, action: str, ref: str, refused: int | None = None) -> None:
        detail = {"refused": refused} if refused is not None else {}
        audit.note(self.rt, "limits", action, f"sender:{ref}", **detail)

    def _busy_page(self) -> bytes:
        """ "Wait a minute" in every language the clinic speaks (we do not know whose form this was)."""
        clinic = self.rt.settings.clinic
        fill = {k: html.escape(v) for k, v in (("clinic", clinic.name), ("phone", clinic.phone))}
        fill["emergency"] = html.escape(clinic.emergency_number)
        parts, title = [], ""
        for lang in clinic.languages:
            said = page_texts(clinic.templates, lang)
            title = title or html.escape(said["busy"]["title"])
            body = html.escape(said["busy"]["body"]).format(**fill)
            emergency = html.escape(said["common"]["emergency"]).format(**fill)
            parts.append(f'<div lang="{lang}"><p>{body}</p><p>{emergency}</p></div>')
        head = f'<!doctype html><html lang="{clinic.languages[0]}"><meta charset=utf-8><title>{title}</title>'
        return (head + "".join(parts)).encode()


def client_key(scope: Scope) -> str:
    """The client's address as the server saw it (behind a proxy: uvicorn's --forwarded-allow-ips sets it from
    X-Forwarded-For); an IPv6 client by its /64."""
    host = (scope.get("client") or ("unknown", 0))[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return str(host)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1").strip())
    return None


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    """Read the whole body (BodyLimit, outside, bounds it) and a `receive` that hands it to the app again."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _once(body: bytes) -> Receive:
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    headers: dict[str, str] | None = None,
    close: bool = False,
) -> None:
    raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
