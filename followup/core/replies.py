"""A reply as the service sees it, whichever channel it came by, and the sender's address in one canonical form."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import phonenumbers

from followup.core.storable import storable, storable_json


@dataclass(frozen=True)
class Reply:
    """A reply as the service sees it, whichever the channel."""

    channel: str  # sms | email
    provider_key: str  # "twilio:<MessageSid>" / "email:<Message-ID>"
    sender: str  # E.164 number or lower-cased address
    body: str  # for email: the reply alone, quoted history and signature removed
    subject: str | None = None
    reply_token: str | None = None  # the per-patient reply-to local part, for email
    provider_opt_out: str | None = None  # Twilio's OptOutType (STOP / START / HELP), when it handled a keyword
    meta: dict[str, Any] | None = None


def normalise_sender(raw: str, region: str) -> str:
    try:
        parsed = phonenumbers.parse(raw, region)
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        return raw.strip()


def storable_reply(reply: Reply) -> Reply:
    """The reply with every text made storable (hostile input: NUL, lone surrogates)."""

    def opt(text: str | None) -> str | None:
        return storable(text) if text is not None else None

    return replace(
        reply,
        provider_key=storable(reply.provider_key),
        sender=storable(reply.sender),
        body=storable(reply.body),
        subject=opt(reply.subject),
        reply_token=opt(reply.reply_token),
        provider_opt_out=opt(reply.provider_opt_out),
        meta=storable_json(reply.meta),
    )
