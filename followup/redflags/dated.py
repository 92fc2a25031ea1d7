"""Named dates ("since Christmas", "desde el 3 de noviembre") turned into weeks before the reply's date.

A spec, as written in `[durations] named_dates` of the criteria file:
- "MM-DD": that day every year ("12-25");
- "MM:DAY:N": the Nth weekday of month MM, N = -1 for the last ("11:thu:4", Thanksgiving in the US);
- "easter" or "easter-N" / "easter+N": Easter Sunday, or N days from it (Holy Week).
A month word ("october") counts from the 1st, or from the day a day word gives ("mid" = 15); a day number
next to a month ("november 3", "el 3 de noviembre") from that day. The date meant is the latest one not after
the reply's date: "since Christmas" on 4 December is last year's Christmas.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta

from dateutil.easter import easter as western_easter
from dateutil.relativedelta import relativedelta, weekdays

from followup.content.dates import MONTHS as MONTH_NAMES
from followup.redflags.normalise import fold_accents

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Month names as the messages spell them (content/dates.py), folded as replies are, with English abbreviations.
MONTHS = {
    **{fold_accents(name.lower()): n for names in MONTH_NAMES.values() for n, name in enumerate(names, 1)},
    **{name[:3].lower(): n for n, name in enumerate(MONTH_NAMES["en"], 1)},
    "sept": 9,
    "setiembre": 9,
}
_DAY = re.compile(r"^(\d{1,2})(st|nd|rd|th|ro|o|a)?$")

Resolver = Callable[[int], date]  # the named date in a given year


class SpecError(ValueError):
    pass


def parse_spec(spec: str) -> Resolver:
    """The resolver for one spec; SpecError says what is wrong with it."""
    text = spec.strip().lower()
    if m := re.fullmatch(r"(\d{2})-(\d{2})", text):
        month, day = int(m[1]), int(m[2])
        try:
            date(2024, month, day)  # a leap year: 02-29 is a valid spec
        except ValueError:
            raise SpecError(f"{spec!r} is not a day of the year (MM-DD)") from None
        return lambda year: _clamped(year, month, day)
    if m := re.fullmatch(r"(\d{2}):([a-z]{3}):(-1|[1-5])", text):
        month, weekday, n = int(m[1]), m[2], int(m[3])
        if not 1 <= month <= 12 or weekday not in WEEKDAYS:
            raise SpecError(f"{spec!r}: expected MM:DAY:N with DAY one of {', '.join(WEEKDAYS)}")
        return lambda year: nth_weekday(year, month, WEEKDAYS.index(weekday), n)
    if m := re.fullmatch(r"easter(?:([+-])(\d{1,2}))?", text):
        shift = 0 if m[1] is None else int(m[2]) * (1 if m[1] == "+" else -1)
        return lambda year: easter(year) + timedelta(days=shift)
    raise SpecError(f"{spec!r}: expected MM-DD, MM:DAY:N (e.g. 11:thu:4) or easter[+-N]")


def _clamped(year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError:  # 02-29 in a common year, or "november 31"
        return date(year, month, 28 if month == 2 else 30)


def nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The nth `weekday` (0 = Monday) of the month; n = -1 for the last."""
    found: date = date(year, month, 1) + relativedelta(day=1 if n > 0 else 31, weekday=weekdays[weekday](n))
    return found


def easter(year: int) -> date:
    """Easter Sunday (Gregorian), from python-dateutil."""
    found: date = western_easter(year)
    return found


def latest(resolve: Resolver, today: date) -> date:
    """The latest occurrence not after `today`."""
    this_year = resolve(today.year)
    return this_year if this_year <= today else resolve(today.year - 1)


def weeks_since(
    words: Sequence[str], named: Mapping[str, Resolver], day_words: Mapping[str, int], today: date
) -> float | None:
    """Weeks from the date the words name to `today`, or None when they name none."""
    joined = " ".join(words)
    for n in range(min(len(words), 6), 0, -1):  # the longest name first ("new year s eve" before "new year")
        for i in range(len(words) - n + 1):
            resolve = named.get(" ".join(words[i : i + n]))
            if resolve is not None:
                return (today - latest(resolve, today)).days / 7
    month = next((MONTHS[w] for w in words if w in MONTHS), None)
    if month is None:
        return None
    day = next((int(m[1]) for w in words if (m := _DAY.match(w)) and 1 <= int(m[1]) <= 31), None)
    if day is None:
        day = next((d for w, d in day_words.items() if re.search(rf"\b{re.escape(w)}\b", joined)), 1)
    start = latest(lambda year: _clamped(year, month, day), today)
    return (today - start).days / 7


__all__ = ["MONTHS", "Resolver", "SpecError", "easter", "latest", "nth_weekday", "parse_spec", "weeks_since"]
