"""Text from outside made storable, and a reply as the service sees it (followup/core/storable.py and
followup/core/replies.py): NUL and lone surrogates, JSON-like data, and the sender's canonical address."""

from __future__ import annotations

from typing import Any

import pytest

from followup.core.replies import Reply, normalise_sender, storable_reply
from followup.core.storable import storable, storable_json


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("a\x00b\x00", "ab"),
        ("a\ud800b", "a\ufffdb"),
        ("\udfff\udc80", "\ufffd\ufffd"),
        ("\ud83d\x00\ude00", "\ufffd\ufffd"),
        ("\ud7ff\ue000😀\t\x01", "\ud7ff\ue000😀\t\x01"),
        ("", ""),
    ],
    ids=["plain", "nul-dropped", "lone-high", "lone-lows", "nul-between-halves", "neighbours-kept", "empty"],
)
def test_storable(text: str, expected: str) -> None:
    """NUL is dropped and every lone surrogate (U+D800 to U+DFFF) becomes U+FFFD; nothing else changes."""
    assert storable(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x\x00", "x"),
        ({"k\x00": "v\ud800"}, {"k": "v\ufffd"}),
        (["a\x00", ("b\x00", 1)], ["a", ["b", 1]]),
        ({"n": [{"deep\ud800": None}]}, {"n": [{"deep\ufffd": None}]}),
        (("t\x00",), ["t"]),
        (7, 7),
        (None, None),
        (True, True),
        (2.5, 2.5),
    ],
    ids=[
        "string",
        "dict-keys-and-values",
        "list-with-tuple",
        "nested",
        "tuple-becomes-list",
        "int",
        "none",
        "bool",
        "float",
    ],
)
def test_storable_json(value: Any, expected: Any) -> None:
    """Every string in JSON-like data is made storable, keys too; tuples come back as lists; other values stay."""
    assert storable_json(value) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(415) 555-2671", "US", "+14155552671"),
        ("07400 123456", "GB", "+447400123456"),
        ("+1 415 555 2671", "GB", "+14155552671"),
        (" Ana@Example.com ", "US", "Ana@Example.com"),
        ("\tnot a number\n", "US", "not a number"),
    ],
    ids=["us-national", "gb-national-uses-region", "international-ignores-region", "email-stripped", "text-stripped"],
)
def test_normalise_sender(raw: str, region: str, expected: str) -> None:
    """A phone number becomes E.164 (a national one read in the clinic's region); anything else is only stripped."""
    assert normalise_sender(raw, region) == expected


def test_storable_reply_cleans_every_text_field() -> None:
    """Every text of a reply, its meta included, is made storable; the channel is kept as it is."""
    reply = Reply(
        channel="sms",
        provider_key="twilio:SM\x001",
        sender="+1415\x005552671",
        body="hi\ud800",
        subject="re\x00",
        reply_token="tok\udc00",
        provider_opt_out="STOP\x00",
        meta={"k\x00": ["v\ud800"]},
    )
    assert storable_reply(reply) == Reply(
        channel="sms",
        provider_key="twilio:SM1",
        sender="+14155552671",
        body="hi\ufffd",
        subject="re",
        reply_token="tok\ufffd",
        provider_opt_out="STOP",
        meta={"k": ["v\ufffd"]},
    )


def test_storable_reply_keeps_absent_fields_absent() -> None:
    """Optional fields that were not given stay None."""
    reply = Reply(channel="email", provider_key="email:<m@x>", sender="a@b.c", body="ok")
    assert storable_reply(reply) == reply
    assert storable_reply(reply).subject is None and storable_reply(reply).meta is None
