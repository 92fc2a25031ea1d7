"""SMS segment arithmetic and GSM-7 transliteration (followup/core/sms.py), table-driven: the GSM-7 and UCS-2
boundaries, characters outside the Basic Multilingual Plane, and what `gsm_safe` makes of letters GSM-7 lacks."""

from __future__ import annotations

import pytest

from followup.core.sms import MAX_SEGMENTS, gsm_safe, is_gsm7, segments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("Hello, Ana! 09:30 @ £5", True),
        ("€ [x] {y} ^~|\\", True),
        ("\n\r\f", True),
        ("ΔΦΓΛΩΠΨΣΘΞ", True),
        ("á", False),
        ("a’", False),
        ("😀", False),
        ("\t", False),
    ],
    ids=["empty", "basic", "extended", "controls-in-gsm", "greek-capitals", "a-acute", "curly-quote", "emoji", "tab"],
)
def test_is_gsm7(text: str, expected: bool) -> None:
    """A text is GSM-7 when every character is in the basic or the extended table."""
    assert is_gsm7(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("GSM-7", 1)),
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),
        ("a" * 307, ("GSM-7", 3)),
        ("€" * 80, ("GSM-7", 1)),
        ("€" * 81, ("GSM-7", 2)),
        ("€" + "a" * 158, ("GSM-7", 1)),
        ("€" + "a" * 159, ("GSM-7", 2)),
        ("€" * 153, ("GSM-7", 2)),
        ("€" * 154, ("GSM-7", 3)),
        ("’" + "a" * 69, ("UCS-2", 1)),
        ("’" + "a" * 70, ("UCS-2", 2)),
        ("’" + "a" * 133, ("UCS-2", 2)),
        ("’" + "a" * 134, ("UCS-2", 3)),
        ("€’" + "a" * 68, ("UCS-2", 1)),
        ("\uffff" * 70, ("UCS-2", 1)),
        ("\uffff" * 71, ("UCS-2", 2)),
        ("\U00010000" * 35, ("UCS-2", 1)),
        ("\U00010000" * 36, ("UCS-2", 2)),
        ("😀" * 67, ("UCS-2", 2)),
        ("😀" * 68, ("UCS-2", 3)),
    ],
    ids=[
        "empty",
        "gsm-160",
        "gsm-161",
        "gsm-306",
        "gsm-307",
        "gsm-80-escapes",
        "gsm-81-escapes",
        "gsm-escape-plus-158",
        "gsm-escape-plus-159",
        "gsm-153-escapes",
        "gsm-154-escapes",
        "ucs2-70",
        "ucs2-71",
        "ucs2-134",
        "ucs2-135",
        "ucs2-euro-counts-once",
        "ucs2-u+ffff-is-one-unit",
        "ucs2-71-u+ffff",
        "ucs2-u+10000-is-two-units",
        "ucs2-36-u+10000",
        "ucs2-134-units-of-emoji",
        "ucs2-136-units-of-emoji",
    ],
)
def test_segments(text: str, expected: tuple[str, int]) -> None:
    """GSM-7: 160 units, then 153 a segment, an escape costs 2; UCS-2: 70, then 67, from U+10000 a char costs 2."""
    assert segments(text) == expected


def test_two_segments_is_the_ceiling_for_a_message() -> None:
    """A message may take at most two segments."""
    assert MAX_SEGMENTS == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hola Ana, ¿qué tal? Ñandú", "Hola Ana, ¿qué tal? Ñandu"),
        ("sábado", "sabado"),
        ("Łukasz", "Lukasz"),
        ("It’s", "It's"),
        ("Ώρα", "Ωra"),
        ("ﬁne", "fine"),
        ("Zoë Brontë", "Zoe Bronte"),
        ("a\u0301", "a"),
        ("😀!", "!"),
        ("", ""),
    ],
    ids=[
        "gsm-kept-u-acute-dropped",
        "accent-dropped",
        "transliterated",
        "curly-quote",
        "greek-accent-dropped-before-transliteration",
        "ligature-decomposed",
        "diaeresis-outside-gsm",
        "combining-mark-alone",
        "emoji-dropped",
        "empty",
    ],
)
def test_gsm_safe(text: str, expected: str) -> None:
    """Outside GSM-7 a letter loses its accent if the bare letter is GSM-7 ("Ώ" is "Ω"), else is transliterated."""
    assert gsm_safe(text) == expected
    assert is_gsm7(gsm_safe(text))
