"""Triage as submitted (followup/core/triage.py), with plain values: how answers and names are read, control
characters in every text field, the consent and contact rules of `check_contact`, phone numbers, and the fields
a program condition may test."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from followup.core.triage import (
    Answers,
    Contact,
    InputError,
    TriageIn,
    _unprintable,
    answer_fields,
    check_contact,
    normalise_phone,
)

ANSWERS: dict[str, Any] = {
    "onset_weeks": 2,
    "weakness": False,
    "atrophy": False,
    "daily_activities": False,
    "speech_swallowing": False,
    "breathing": False,
    "numbness_tingling": False,
    "balance": False,
    "severe_cramps": False,
    "caffeine_per_day": 1,
    "sleep_hours": 8,
    "stress": 2,
    "water_glasses": 8,
    "intense_exercise": False,
}


def submission(**over: Any) -> dict[str, Any]:
    """A valid triage submission by SMS, with fields replaced."""
    base: dict[str, Any] = {
        "name": "Ana María López",
        "phone": "(415) 555-2671",
        "email": None,
        "channel": "sms",
        "timezone": "America/Los_Angeles",
        "consent": True,
        "answers": ANSWERS,
    }
    return {**base, **over}


def errors(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """The (location, message) of each validation error `data` gives."""
    with pytest.raises(ValidationError) as info:
        TriageIn.model_validate(data)
    return [(e["loc"], e["msg"]) for e in info.value.errors()]


def test_input_error_names_the_field() -> None:
    """An InputError keeps its field and message apart and reads as "field: message"."""
    err = InputError("answers.sleep_hours", "must be 24 or less")
    assert (err.field, err.message, str(err)) == ("answers.sleep_hours", "must be 24 or less", err.args[0])
    assert str(err) == "answers.sleep_hours: must be 24 or less"
    assert isinstance(err, ValueError)


@pytest.mark.parametrize(
    ("locations", "expected"),
    [
        ([" Calves ", "EYELIDS", "legs", "Leg", "all over"], ["calf", "eyelid", "calf", "calf", "widespread"]),
        (["hand", "Hands", " feet", "thighs ", "arms"], ["hand", "hand", "foot", "thigh", "arm"]),
        (["Tongue", " back "], ["tongue", "back"]),
        ([], []),
    ],
    ids=["plurals-and-legs", "more-plurals", "case-and-spaces", "none"],
)
def test_locations_are_read_in_the_singular_lower_case(locations: list[str], expected: list[str]) -> None:
    """Where the twitching is may be written in the plural, in capitals, with spaces: it is read as the location."""
    assert Answers.model_validate({**ANSWERS, "locations": locations}).locations == expected


@pytest.mark.parametrize("locations", [["elbow"], [3], "calf"], ids=["unknown-place", "number", "not-a-list"])
def test_a_location_outside_the_list_is_refused(locations: Any) -> None:
    """A location that is not one of the listed places, or not a list, is a validation error."""
    with pytest.raises(ValidationError) as info:
        Answers.model_validate({**ANSWERS, "locations": locations})
    assert info.value.errors()[0]["loc"][0] == "locations"


@pytest.mark.parametrize(
    ("locations", "eyelid_only"),
    [(["eyelid"], True), (["eyelids", "eyelid"], True), (["eyelid", "calf"], False), (["calf"], False), ([], False)],
    ids=["eyelid", "eyelid-twice", "eyelid-and-calf", "calf", "nowhere"],
)
def test_for_program_adds_eyelid_only(locations: list[str], eyelid_only: bool) -> None:
    """Program conditions see every answer, plus `eyelid_only`: twitching reported in the eyelid and nowhere else."""
    answers = Answers.model_validate({**ANSWERS, "locations": locations})
    data = answers.for_program()
    assert data["eyelid_only"] is eyelid_only
    assert {k: v for k, v in data.items() if k != "eyelid_only"} == answers.model_dump()


@pytest.mark.parametrize(
    ("ch", "unprintable"),
    [
        ("\x00", True),
        ("\x01", True),
        ("\x0b", True),
        ("\x1b", True),
        ("\x7f", True),
        ("\x85", True),
        ("\ud800", True),
        ("\udfff", True),
        ("\t", False),
        ("\n", False),
        ("\r", False),
        (" ", False),
        ("a", False),
        ("é", False),
        ("\u200b", False),
        ("\u2028", False),
        ("\ufffd", False),
        ("😀", False),
    ],
    ids=[
        "nul",
        "soh",
        "vertical-tab",
        "escape",
        "delete",
        "next-line",
        "high-surrogate",
        "low-surrogate",
        "tab",
        "newline",
        "carriage-return",
        "space",
        "letter",
        "accented",
        "zero-width-space",
        "line-separator",
        "replacement",
        "emoji",
    ],
)
def test_unprintable(ch: str, unprintable: bool) -> None:
    """Control characters (Cc) but tab, newline and carriage return, and lone surrogates (Cs), are unprintable."""
    assert _unprintable(ch) is unprintable


TEXT_FIELDS = {
    "name": "Ana",
    "phone": "4155552671",
    "email": "ana@example.com",
    "timezone": "UTC",
    "consent_text": "Yes",
}


@pytest.mark.parametrize("field", list(TEXT_FIELDS))
@pytest.mark.parametrize("ch", ["\x00", "\x1b", "\x7f", "\x85"], ids=["nul", "escape", "delete", "next-line"])
def test_control_characters_are_refused_in_every_text_field(field: str, ch: str) -> None:
    """A control character in any intake text field is an error on that field."""
    value = TEXT_FIELDS[field]
    data = submission(**{field: value[:2] + ch + value[2:]})
    if field == "name" and ch == "\x85":  # NEXT LINE is white space too: folded into a space before the check
        assert TriageIn.model_validate(data).name == "An a"
        return
    assert errors(data) == [((field,), "Value error, must not contain control characters")]


@pytest.mark.parametrize("field", list(TEXT_FIELDS))
def test_a_lone_surrogate_is_refused_in_every_text_field(field: str) -> None:
    """A lone surrogate in any intake text field is an error on that field (pydantic refuses some first)."""
    value = TEXT_FIELDS[field]
    ((loc, _msg),) = errors(submission(**{field: value[:2] + "\ud800" + value[2:]}))
    assert loc == (field,)


def test_tabs_and_newlines_are_allowed_in_the_consent_wording() -> None:
    """The consent wording may hold tabs, newlines and carriage returns."""
    assert (
        TriageIn.model_validate(submission(consent_text="I agree:\r\n\tto texts")).consent_text
        == "I agree:\r\n\tto texts"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("  Ana   María\tLópez \n", "Ana María López"),
        ("\u200bAna", "\u200bAna"),
        ("A\x85B", "A B"),
    ],
    ids=["spaces-folded", "zero-width-kept-beside-letters", "next-line-is-a-space"],
)
def test_a_name_has_its_spaces_folded(name: str, expected: str) -> None:
    """A name's runs of white space become one space, with none at either end."""
    assert TriageIn.model_validate(submission(name=name)).name == expected


@pytest.mark.parametrize("name", ["   ", "\u200b", "\u200b \u2060\ufeff"], ids=["spaces", "zero-width", "format-only"])
def test_a_blank_name_is_refused(name: str) -> None:
    """A name of white space or invisible format characters only is blank, and refused."""
    assert errors(submission(name=name)) == [(("name",), "Value error, must not be blank")]


@pytest.mark.parametrize(
    "timezone", ["Mars/Olympus", "EST5", "", "Europe/London "], ids=["unknown", "no-slash", "empty", "space"]
)
def test_a_timezone_must_be_an_iana_zone(timezone: str) -> None:
    """The patient's time zone must be an IANA zone this machine knows."""
    ((loc, msg),) = errors(submission(timezone=timezone))
    assert loc == ("timezone",) and "is not an IANA time zone" in msg


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_a_blank_phone_or_email_is_no_phone_or_email(blank: str) -> None:
    """An empty or white-space phone or email counts as not given."""
    t = TriageIn.model_validate(submission(phone=blank, email=blank, channel="sms"))
    assert (t.phone, t.email) == (None, None)


def test_a_phone_or_email_given_keeps_its_spaces_for_check_contact() -> None:
    """A phone or email with text in it is kept as typed; `check_contact` normalises it."""
    t = TriageIn.model_validate(submission(phone=" 415 555 2671 ", email=" A@B.co "))
    assert (t.phone, t.email) == (" 415 555 2671 ", " A@B.co ")


@pytest.mark.parametrize(
    ("over", "region", "contact"),
    [
        ({}, "US", Contact("+14155552671", None)),
        ({"email": " Ana.Lopez@Example.COM "}, "US", Contact("+14155552671", "ana.lopez@example.com")),
        ({"channel": "email", "phone": None, "email": "ana@example.com"}, "US", Contact(None, "ana@example.com")),
        ({"channel": "email", "phone": "07400 123456", "email": "a@b.co"}, "GB", Contact("+447400123456", "a@b.co")),
        ({"phone": "+44 7400 123456"}, "US", Contact("+447400123456", None)),
    ],
    ids=["sms-phone", "email-lower-cased-and-stripped", "email-only", "email-with-national-phone", "international"],
)
def test_check_contact_normalises_phone_and_email(over: dict[str, Any], region: str, contact: Contact) -> None:
    """The phone becomes E.164 (a national number read in the clinic's region), the email stripped and lower-cased."""
    assert check_contact(TriageIn.model_validate(submission(**over)), region) == contact


@pytest.mark.parametrize(
    ("over", "field", "message"),
    [
        ({"consent": False}, "consent", "the patient must agree to receive messages"),
        ({"consent": False, "phone": None}, "consent", "the patient must agree to receive messages"),
        ({"phone": None}, "phone", "give a mobile number or an email address (neither was given)"),
        ({"phone": "  ", "email": ""}, "phone", "give a mobile number or an email address (neither was given)"),
        ({"phone": None, "email": "ana@example.com"}, "phone", "channel is sms but no mobile number was given"),
        ({"channel": "email", "email": None}, "email", "channel is email but no email address was given"),
        ({"email": "ana@"}, "email", "is not an email address"),
        ({"email": "ana example@x.com"}, "email", "is not an email address"),
        ({"email": "ana@x"}, "email", "is not an email address"),
        ({"email": "ana@-x.com"}, "email", "is not an email address"),
        ({"email": "a" * 65 + "@x.com"}, "email", "is not an email address"),
        ({"phone": "12"}, "phone", "is not a valid phone number"),
        ({"phone": "020 7946 0018"}, "phone", "is not a valid phone number"),
        ({"phone": "+44 20 7946 0018"}, "phone", "cannot receive text messages (not a mobile number)"),
        ({"phone": "+1 800 555 0199"}, "phone", "cannot receive text messages (not a mobile number)"),
        (
            {"phone": "call me"},
            "phone",
            "is not a phone number (The string supplied did not seem to be a phone number.)",
        ),
    ],
    ids=[
        "no-consent",
        "no-consent-before-no-contact",
        "no-contact",
        "blank-contact",
        "sms-without-phone",
        "email-without-email",
        "email-no-domain",
        "email-space",
        "email-no-dot",
        "email-domain-hyphen",
        "email-local-part-too-long",
        "phone-too-short",
        "gb-landline-read-as-us",
        "landline",
        "toll-free",
        "phone-words",
    ],
)
def test_check_contact_names_the_field_at_fault(over: dict[str, Any], field: str, message: str) -> None:
    """Consent, a contact for the channel, a valid email, a mobile number: the first rule broken names its field."""
    with pytest.raises(InputError) as info:
        check_contact(TriageIn.model_validate(submission(**over)), "US")
    assert (info.value.field, info.value.message) == (field, message)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(415) 555-2671", "US", "+14155552671"),
        ("07400 123456", "GB", "+447400123456"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("+34 612 345 678", "US", "+34612345678"),
    ],
)
def test_normalise_phone(raw: str, region: str, expected: str) -> None:
    """A mobile-capable number becomes E.164, read in the clinic's region unless it starts with +."""
    assert normalise_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region", "message"),
    [
        ("415 555 2671", "ZZ", "is not a phone number (Missing or invalid default region.)"),
        ("+999 1234", "US", "is not a phone number (Could not interpret numbers after plus-sign.)"),
        ("01 23 45 67 89", "FR", "cannot receive text messages (not a mobile number)"),
        ("+882 1234", "US", "is not a valid phone number"),
    ],
    ids=["no-region", "unknown-country", "fr-landline", "invalid"],
)
def test_normalise_phone_refuses(raw: str, region: str, message: str) -> None:
    """A number that does not parse, is not valid, or cannot take a text message is an InputError on the phone."""
    with pytest.raises(InputError) as info:
        normalise_phone(raw, region)
    assert (info.value.field, info.value.message) == ("phone", message)


def test_answer_fields_are_what_a_condition_may_test() -> None:
    """Every answer but the list of locations, plus the derived `eyelid_only`, which is a yes/no."""
    fields = answer_fields()
    assert set(fields) == (set(Answers.model_fields) - {"locations"}) | {"eyelid_only"}
    assert fields["eyelid_only"] is bool
    assert {v for k, v in fields.items() if k != "eyelid_only"} == {object}
