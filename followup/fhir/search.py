"""Search: the parameters a FHIR search takes here (`patient`, `_lastUpdated`, `_count`, and the `_cursor` of a
next link), the keyset the pages walk, and the searchset Bundle.

Pages are keyset, not offset: results come in order of (lastUpdated, kind, id), and a next link carries the key
of the last result, so a page costs the same however deep it is and a row changed meanwhile is not skipped. An
unknown parameter is refused (400), never ignored: a mistyped `patient` must not answer with everyone.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from fhir.resources.R4B.bundle import Bundle

from followup.fhir.outcome import checked, refuse
from followup.fhir.rows import instant, utc

DEFAULT_COUNT = 20
MAX_COUNT = 100
PREFIXES = ("eq", "ge", "gt", "le", "lt")


@dataclass(frozen=True)
class Key:
    """Where a result sits in the order of a search: lastUpdated, then kind (one rank per table), then id."""

    at: datetime
    rank: int
    id: int

    def encode(self) -> str:
        raw = f"{instant(self.at)}|{self.rank}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Key:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            at, rank, rid = raw.split("|")
            return cls(utc(datetime.fromisoformat(at.replace("Z", "+00:00"))), int(rank), int(rid))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise refuse(
                "structure", "_cursor", "is not a cursor this server gave (follow the next link as is)"
            ) from None


@dataclass(frozen=True)
class Search:
    patient_id: int | None = None
    since: datetime | None = None  # lastUpdated >= since
    until: datetime | None = None  # lastUpdated < until
    count: int = DEFAULT_COUNT
    after: Key | None = None
    identifier: tuple[str, str] | None = None  # Patient only: system|value, as a transaction gave it
    given: list[tuple[str, str]] = field(default_factory=list)  # the parameters, for the links


def parse_search(params: Sequence[tuple[str, str]], allowed: Sequence[str]) -> Search:
    """Read a search's query parameters; `allowed` are the search parameters the resource type supports here."""
    patient_id = since = until = after = identifier = None
    count = DEFAULT_COUNT
    kept = []
    for name, value in params:
        if name == "_count":
            if not value.isdigit() or int(value) < 1:
                raise refuse("structure", "_count", f"must be a whole number from 1 (at most {MAX_COUNT} are sent)")
            count = min(int(value), MAX_COUNT)
            continue
        if name == "_cursor":
            after = Key.decode(value)
            continue
        if name == "_format" and value in ("json", "application/fhir+json", "application/json"):
            continue
        if name not in allowed:
            supported = ", ".join([*allowed, "_count"])
            raise refuse("structure", name, f"is not a search parameter here (supported: {supported})", "not-supported")
        kept.append((name, value))
        if name == "patient":
            patient_id = _patient(value)
        elif name == "identifier":
            system, bar, ident = value.partition("|")
            if not bar or not system or not ident:
                raise refuse("structure", "identifier", "must be system|value, e.g. urn:oid:1.2.3|MRN-1001")
            identifier = (system, ident)
        elif name == "_lastUpdated":
            lo, hi = _date_range(value)
            since = lo if since is None or (lo is not None and lo > since) else since
            until = hi if until is None or (hi is not None and hi < until) else until
    return Search(patient_id, since, until, count, after, identifier, kept)


def _patient(value: str) -> int:
    rid = value.rstrip("/").rsplit("/", 1)[-1]
    if (not value.startswith(("Patient/", "http")) and "/" in value) or not rid.isdigit() or len(rid) > 9:
        raise refuse("structure", "patient", "must be a Patient id, Patient/<id> or its full URL")
    return int(rid)


def _date_range(value: str) -> tuple[datetime | None, datetime | None]:
    """`_lastUpdated=[prefix]date-or-instant` as bounds [lo, hi), by the value's precision (a day or an instant)."""
    prefix = value[:2] if value[:2] in PREFIXES else "eq"
    text = value[2:] if value[:2] in PREFIXES else value
    try:
        if len(text) == 10:
            start = datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
            end = start + timedelta(days=1)
        else:
            start = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if start.tzinfo is None:
                raise ValueError("no time zone")
            start = utc(start)
            end = start + timedelta(microseconds=1)
    except ValueError:
        raise refuse(
            "structure", "_lastUpdated", "must be [ge|gt|le|lt|eq]YYYY-MM-DD or an instant with its zone"
        ) from None
    return {
        "eq": (start, end),
        "ge": (start, None),
        "gt": (end, None),
        "le": (None, end),
        "lt": (None, start),
    }[prefix]


Cut = Literal["all", "at_or_after", "after", "after_id"]


def cut(rank: int, after: Key | None) -> Cut:
    """Which rows of the table with `rank` come after the cursor: all of them; those updated at or after its
    time (a later-ranked table); strictly after (an earlier-ranked one); or, in its own table, later ids at the
    same time too."""
    if after is None:
        return "all"
    if rank > after.rank:
        return "at_or_after"
    if rank < after.rank:
        return "after"
    return "after_id"


def searchset(
    base_url: str, kind: str, search: Search, resources: list[dict[str, Any]], last: Key | None
) -> dict[str, Any]:
    """A page of results; `last` is the key of the page's last result when more may follow (a next link)."""
    fhir = f"{base_url}/fhir"
    query = [*search.given, ("_count", str(search.count))]
    links = [{"relation": "self", "url": f"{fhir}/{kind}?{urlencode(query + _cursor(search.after))}"}]
    if last is not None:
        links.append({"relation": "next", "url": f"{fhir}/{kind}?{urlencode([*query, ('_cursor', last.encode())])}"})
    entries = [{"fullUrl": f"{fhir}/{r['resourceType']}/{r['id']}", "search": {"mode": "match"}} for r in resources]
    # The envelope is validated here; each resource already was, by the mapper that made it (validating it again
    # inside the Bundle would double the cost of a page).
    data = checked(Bundle, {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries})
    for entry, res in zip(data.get("entry", []), resources, strict=True):
        entry["resource"] = res
    return data


def _cursor(after: Key | None) -> list[tuple[str, str]]:
    return [("_cursor", after.encode())] if after else []
