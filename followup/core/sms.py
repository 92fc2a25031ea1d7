"""SMS segment arithmetic (GSM-7 and UCS-2), kept as data so templates can be checked before they are sent."""

from __future__ import annotations

import math
import unicodedata

from unidecode import unidecode

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")
MAX_SEGMENTS = 2


_GSM7 = frozenset(GSM7_BASIC | GSM7_EXTENDED)


def is_gsm7(text: str) -> bool:
    return _GSM7.issuperset(text)


def segments(text: str) -> tuple[str, int]:
    """(encoding, number of segments) a carrier would use for `text`. Counted with set and str operations rather
    than a loop over the characters: it runs for every SMS the dispatcher renders (bench/README.md)."""
    if is_gsm7(text):
        units = len(text) + sum(text.count(ch) for ch in GSM7_EXTENDED)  # an extended character takes two
        return "GSM-7", 1 if units <= 160 else math.ceil(units / 153)
    units = len(text.encode("utf-16-le", "surrogatepass")) // 2  # a character past U+FFFF takes two
    return "UCS-2", 1 if units <= 70 else math.ceil(units / 67)


def gsm_safe(text: str) -> str:
    """`text` in GSM-7 letters: an accent outside GSM-7 is dropped ("sábado" -> "sabado"), anything else is
    transliterated with unidecode ("Łukasz" -> "Lukasz"). One non-GSM-7 letter would halve what an SMS holds."""
    out = []
    for ch in text:
        if not is_gsm7(ch):
            bare = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            ch = bare if bare and is_gsm7(bare) else unidecode(ch)
        out.append(ch)
    return "".join(out)
