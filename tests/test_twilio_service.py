"""SMS through a Twilio Messaging Service (`twilio.messaging_service_sid`): the real SDK posts MessagingServiceSid
and no From to the fake provider, which records the service; the service is the sender that pacing counts; an
interrupted send is found again by recipient and service; without a service, From is the number as before."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import make_settings

from followup.fakeprovider import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN, FakeProvider
from followup.transports.base import Outgoing
from followup.transports.factory import build_transports
from followup.transports.twilio_sms import TwilioSms

NUMBER = "+15005550006"
SERVICE = "MG" + "0123456789abcdef" * 2
PATIENT = "+13105550142"


@pytest.fixture
def fp() -> Iterator[FakeProvider]:
    provider = FakeProvider(status_delay_s=3600.0).start()  # callbacks held back: this is about sending
    yield provider
    provider.stop()


def transport(fp: FakeProvider, service: str) -> TwilioSms:
    return TwilioSms(
        DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN, NUMBER, messaging_service_sid=service, api_base=fp.url
    )


@pytest.mark.parametrize(
    ("service", "sender", "recorded_from", "recorded_service"),
    [
        (SERVICE, SERVICE, None, SERVICE),  # Twilio picks the number from the service's pool
        ("", NUMBER, NUMBER, None),  # no service: our own number, as before
    ],
)
def test_send_goes_through_the_service_when_one_is_set(
    fp: FakeProvider, service: str, sender: str, recorded_from: str | None, recorded_service: str | None
) -> None:
    """With a service the SDK sends MessagingServiceSid instead of From, and the service is the paced sender."""
    sms = transport(fp, service)
    assert sms.sender == sender
    sent = sms.send(Outgoing(message_id=7, channel="sms", to=PATIENT, body="Hello from the clinic"))
    [rec] = fp.messages()
    assert rec["provider_id"] == sent.provider_id
    assert rec["messaging_service_sid"] == recorded_service
    assert (rec["from"] if recorded_from else None) == recorded_from
    assert fp.stats()["max_per_second_by_sender"] == {sender: 1}


def test_interrupted_service_send_is_found_by_recipient_and_service(fp: FakeProvider) -> None:
    """Reconciliation finds a message sent through the service, and not one sent from the number alone."""
    through_service, from_number = transport(fp, SERVICE), transport(fp, "")
    since = datetime.now(UTC) - timedelta(minutes=5)
    out = Outgoing(message_id=8, channel="sms", to=PATIENT, body="Your check-in")
    sent = through_service.send(out)
    assert through_service.find_sent(out, since) == sent.provider_id
    other = Outgoing(message_id=9, channel="sms", to=PATIENT, body="Sent from the number")
    from_number.send(other)
    assert through_service.find_sent(other, since) is None


def test_settings_choose_the_service(fp: FakeProvider) -> None:
    """`twilio.messaging_service_sid` in the settings reaches the SMS transport."""
    settings = make_settings(
        "sqlite:///unused.db",
        twilio={
            "account_sid": DEV_TWILIO_ACCOUNT_SID,
            "auth_token": DEV_TWILIO_AUTH_TOKEN,
            "from_number": NUMBER,
            "messaging_service_sid": SERVICE,
            "api_base": fp.url,
        },
    )
    sms = build_transports(settings)["sms"]
    assert sms.sender == SERVICE
