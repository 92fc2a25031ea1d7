"""Pick each channel's transport from the settings: the real provider when configured, else the outbox."""

from __future__ import annotations

from pathlib import Path

from followup.settings import Settings
from followup.transports.base import Transport
from followup.transports.outbox import Outbox
from followup.transports.sendgrid_email import SendgridEmail
from followup.transports.twilio_sms import TwilioSms
from followup.transports.twilio_voice import Caller, TwilioVoice


def build_transports(settings: Settings, outbox_dir: Path = Path("var/outbox")) -> dict[str, Transport]:
    sms: Transport
    email: Transport
    if settings.twilio_configured:
        t = settings.twilio
        sms = TwilioSms(
            t.account_sid,
            t.auth_token,
            t.from_number,
            messaging_service_sid=t.messaging_service_sid,
            api_base=t.api_base,
            timeout=t.timeout_seconds,
            status_callback_base=settings.server.public_url,
        )
    else:
        sms = Outbox("sms", outbox_dir / "sms.jsonl", sender=settings.twilio.from_number or "outbox")
    if settings.sendgrid_configured:
        g = settings.sendgrid
        email = SendgridEmail(g.api_key, g.from_email, g.from_name, api_base=g.api_base, timeout=g.timeout_seconds)
    else:
        email = Outbox("email", outbox_dir / "email.jsonl", sender=settings.sendgrid.from_email)
    return {"sms": sms, "email": email}


def build_caller(settings: Settings) -> Caller | None:
    """Twilio Voice when Twilio is configured and calls are on; otherwise no phone calls (SMS and email only)."""
    if not (settings.twilio_configured and settings.voice.enabled):
        return None
    t = settings.twilio
    return TwilioVoice(t.account_sid, t.auth_token, t.from_number, api_base=t.api_base, timeout=t.timeout_seconds)
