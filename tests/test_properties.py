"""Properties over any input (hypothesis): what patients and the internet send can make our parsers say "no", never
crash. Phone numbers, email replies, message templates, red-flag detection, keywords, log redaction. No database."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from conftest import ROOT
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from followup.content.templates import Templates, sample_context
from followup.core.keywords import Keywords, load_keywords
from followup.core.replies import Reply
from followup.core.sms import MAX_SEGMENTS, segments
from followup.core.storable import storable
from followup.core.triage import InputError, normalise_phone
from followup.logs import redact
from followup.parsing.inbound_email import BadInbound, parse_sendgrid
from followup.parsing.mailtext import extract_reply, html_to_text
from followup.redflags import Detector, ReplyContext, Verdict
from followup.runtime import load_detector
from followup.services.context import first_name

# Any code point at all, lone surrogates and controls included (hypothesis leaves surrogates out by default).
ANY_CHAR = st.characters(exclude_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=300)
# The phone-ish alphabet finds far more parser paths than random text.
PHONEISH = st.text(st.sampled_from("0123456789+-.() /xXextEXT#*,;ｰ０１２٣"), max_size=40)
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# First names written in the GSM-7 alphabet (no space: a first name is one word).
GSM_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyzÄÖÑÜäöñüàèéùìòÇØøÅåÆæßÉ-'"
MAX_NAME = 20
CLINICAL = [
    "my",
    "hand",
    "arm",
    "leg",
    "is",
    "getting",
    "weaker",
    "weak",
    "no",
    "not",
    "never",
    "can't",
    "cannot",
    "breathe",
    "swallow",
    "choking",
    "twitching",
    "better",
    "worse",
    "same",
    "1",
    "2",
    "3",
    "yes",
    "NO",
    "STOP",
    "help",
    "mother",
    "worried",
    "about",
    "ALS",
    "since",
    "weeks",
    "2",
    "days",
    "yesterday",
    "😀",
    "\n",
    ".",
    ",",
    "!",
    "?",
    "don't",
    "wasn't",
    "if",
    "maybe",
    "hurt",
    "myself",
    "numb",
    "tingling",
]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(raw=st.one_of(ANY_TEXT, PHONEISH), region=st.sampled_from([*REGIONS, "ZZ"]))
@FAST
@example(raw="+1 (310) 555-0142 ext. 9", region="US")
@example(raw="٠٣١٠٥٥٥٠١٤٢", region="EG")
@example(raw="+" + "9" * 300, region="US")
@example(raw="\x00\ud800", region="GB")
def test_phone_parsing_says_no_only_with_input_error(raw: str, region: str) -> None:
    """Any text in any region is either an E.164 number that parses to itself again, or an InputError."""
    try:
        e164 = normalise_phone(raw, region)
    except InputError as exc:
        assert exc.field == "phone"
        return
    assert E164.match(e164)
    assert normalise_phone(e164, region) == e164


@given(text=st.one_of(ANY_TEXT, st.text(ANY_CHAR, max_size=3_000)))
@FAST
@example(text="Thanks\n\nOn Mon, Nov 30, 2026 at 9:00 AM Clinic <a@b.c> wrote:\n> question?")
@example(text="> " * 2_000)
@example(text="From: x\nSent: y\nTo: z\nSubject: w\n" * 200)
@example(text="-- \n" + "\r\n" * 500)
def test_email_reply_extraction_never_raises(text: str) -> None:
    """Quoted-history and signature removal returns text for any input."""
    assert isinstance(extract_reply(text), str)


@given(html=st.one_of(ANY_TEXT, st.text(st.sampled_from("<>/=\"' abcdivscrptyle&;#x0123"), max_size=2_000)))
@FAST
@example(html="<div>" * 3_000)
@example(html="<script>alert(1)</script><style>x{}</style><p>fine</p>")
@example(html="&#xD800;&#0;&#x110000;&#99999999999;")
def test_html_to_text_never_raises(html: str) -> None:
    """HTML email parts of any shape become text; script and style content never does."""
    out = html_to_text(html)
    assert isinstance(out, str)
    if html == "<script>alert(1)</script><style>x{}</style><p>fine</p>":
        assert out == "fine"


SENDGRID_KEYS = ["from", "to", "subject", "text", "html", "headers", "envelope", "charsets", "email", "SPF", "dkim"]


@given(
    fields=st.dictionaries(st.one_of(st.sampled_from(SENDGRID_KEYS), ANY_TEXT), ANY_TEXT, max_size=8),
    attachments=st.lists(
        st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), ANY_TEXT), max_size=3), max_size=3
    ),
)
@FAST
@example(fields={"from": "a@b.co", "charsets": '{"text": "utf-16"}', "text": "\xff\xfe"}, attachments=[])
@example(fields={"email": "From: a@b.co\nContent-Type: text/plain; charset=x-bogus\n\n\xff"}, attachments=[])
@example(
    fields={"from": "a@b.co", "envelope": '{"to": [1, null, {"x": 2}]}', "headers": "To: " + "x," * 500}, attachments=[]
)
def test_parse_sendgrid_returns_a_reply_or_bad_inbound(fields: dict[str, str], attachments: list[Any]) -> None:
    """Any Inbound Parse post becomes a Reply with a sender address, or is refused with BadInbound."""
    try:
        reply = parse_sendgrid(fields, "reply.clinic.example", list(attachments))
    except BadInbound:
        return
    assert isinstance(reply, Reply) and "@" in reply.sender and reply.provider_key.startswith("email:")


# ---- templates ---------------------------------------------------------------------------------------------------


@cache
def templates() -> Templates:
    return Templates(ROOT / "templates")


def render_all(name: str, channels: tuple[str, ...]) -> list[tuple[str, str, Any]]:
    t = templates()
    ctx = sample_context()
    out = []
    for lang, template, channel in t.names():
        if channel in channels:
            patient = {"first_name": first_name(name), "language": lang}
            out.append(
                (
                    f"{lang}/{template}.{channel}",
                    channel,
                    t.render(template, channel, lang, {**ctx, "patient": patient}),
                )
            )
    return out


@given(name=st.text(ANY_CHAR, min_size=1, max_size=200))
@settings(max_examples=40, deadline=None)
@example(name="{{ clinic.phone }} {% raw %}")
@example(name="<script>alert('x')</script>")
@example(name="\u202eevil\u202c")
def test_any_name_renders_in_every_template_and_is_never_markup(name: str) -> None:
    """Every template renders for any name (one character to 200, any code point); the name is text, never
    template syntax or HTML."""
    for where, channel, rendered in render_all(name, ("sms", "email")):
        if channel == "email" and "<script>" in first_name(name):
            assert "<script>" not in (rendered.html or ""), where
    if "{{" in name:
        assert any(first_name(name) in r.body for _, ch, r in render_all(name, ("sms",)) if ch == "sms")


@given(name=st.text(st.sampled_from(GSM_LETTERS), min_size=1, max_size=MAX_NAME))
@settings(max_examples=60, deadline=None)
@example(name="W" * MAX_NAME)
@example(name="Maximiliano-José")
def test_sms_stay_within_two_segments_for_names_up_to_20_gsm_characters(name: str) -> None:
    """With a first name of up to 20 GSM-7 characters every SMS, in every language, fits two segments.

    Why 20: the longest patient SMS (the Spanish welcome) is 280 characters with a one-letter name and the shipped
    clinic name, and two GSM-7 segments hold 306; 20 takes hyphenated double names ("Maximiliano-José") with room
    to spare. A name with a character outside GSM-7 (Zoë, Łukasz, 李) switches the whole text to UCS-2, where two
    segments hold 134 characters and no template fits: such texts cost more segments but still go out.
    """
    for where, _, rendered in render_all(name, ("sms",)):
        encoding, count = segments(rendered.body)
        assert count <= MAX_SEGMENTS, (where, encoding, len(rendered.body))


# ---- red flags ---------------------------------------------------------------------------------------------------


@cache
def detector() -> Detector:
    return load_detector(ROOT / "clinic/red_flags.toml")


@given(
    text=st.one_of(st.text(ANY_CHAR, max_size=2_000), st.lists(st.sampled_from(CLINICAL), max_size=120).map(" ".join)),
    weeks=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)
# No deadline: time is measured in bench/redflags.py, never asserted here (a loaded CI machine took 5.5 s to load
# the detector on the first example).
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(text="", weeks=None)
@example(text="😀🤷🏽‍♀️👨‍👩‍👧" * 300, weeks=None)
@example(text="my hand is weaker \ud800 and I can't swallow \udfff", weeks=3.0)
@example(text="a b " * 2_500, weeks=None)  # 10,000 characters, 5,000 words
@example(text="\x00\u202e\u200b\ufeff" * 100, weeks=float("nan"))
def test_red_flag_detection_always_returns_a_verdict(text: str, weeks: float | None) -> None:
    """Any unicode text (empty, emoji, 10,000 characters, lone surrogates, controls) gets a Verdict, never an
    exception; every finding points into the text it was given; every escalation says what found it."""
    verdict = detector().assess(text, ReplyContext(weeks_since_onset=weeks))
    assert isinstance(verdict, Verdict) and verdict.level in ("emergency", "red_flag", "none")
    if verdict.level == "none":
        assert not verdict.findings
    else:  # a rule's finding, or the learned layer's (or a language's) escalation or review, which it says
        assert verdict.findings or verdict.layer in ("learned", "language")
    for f in verdict.findings:
        assert 0 <= f.start <= f.end <= len(text)


@cache
def keywords() -> Keywords:
    return load_keywords(ROOT / "clinic/keywords.toml")


@given(text=ANY_TEXT)
@FAST
@example(text="S\u0336T\u0336O\u0336P\u0336")
@example(text="ＳＴＯＰ")
def test_keywords_never_raise(text: str) -> None:
    """Keyword and opt-out phrase reading take any text."""
    keywords().keyword(text)
    keywords().opt_out_phrase(text)


# ---- what goes to logs and to the database -------------------------------------------------------------------------


@given(text=st.one_of(ANY_TEXT, st.text(st.sampled_from("+0123456789 ()-.@ab"), max_size=80)))
@FAST
@example(text="+13105550142+447911123456")
def test_redaction_leaves_no_international_number(text: str) -> None:
    """Whatever a log line holds, no "+" followed by seven or more digits survives redaction."""
    assert re.search(r"\+\d{7,}", redact(text)) is None


@given(text=ANY_TEXT)
@FAST
def test_storable_text_encodes_and_has_no_nul(text: str) -> None:
    """Text made storable encodes as UTF-8 (so any database takes it) and holds no NUL."""
    out = storable(text)
    out.encode("utf-8")
    assert "\x00" not in out


@pytest.mark.parametrize("path", ["clinic/keywords.toml", "clinic/red_flags.toml"])
def test_the_content_files_these_properties_read_exist(path: str) -> None:
    """The properties above read the shipped content files (a rename would make them pass vacuously)."""
    assert (ROOT / path).is_file() and Path(ROOT / path).stat().st_size > 0
