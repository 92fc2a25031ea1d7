"""One row of a bulk import checked by the triage's own rules (`TriageIn`, `check_contact`), plus its external id.

A row is good (ready to enroll) or bad (the field at fault and what is wrong with it); there is no second
validator: whatever `POST /api/triage` refuses, an import refuses with the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from followup.core.triage import Contact, InputError, TriageIn, check_contact

EXTERNAL_ID_MAX = 100


@dataclass(frozen=True)
class RawRow:
    """A row as read: where it was (a line number in a file, an index in a JSON list) and its fields, or what
    made it unreadable (`problem`)."""

    where: int
    fields: dict[str, Any] | None
    problem: str | None = None


@dataclass(frozen=True)
class GoodRow:
    where: int
    external_id: str
    data: TriageIn
    contact: Contact


@dataclass(frozen=True)
class BadRow:
    where: int
    external_id: str | None
    field: str
    message: str


def check_row(row: RawRow, region: str, allowed: Sequence[str] = ()) -> GoodRow | BadRow:
    """The row's triage validated as the API validates it; the first problem names its field."""
    if row.fields is None:
        return BadRow(row.where, None, "row", row.problem or "unreadable")
    fields = dict(row.fields)
    raw_id = fields.pop("external_id", None)
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, str | int)):
        return BadRow(row.where, None, "external_id", "must be text or a whole number")
    external_id = str(raw_id).strip() if raw_id is not None else None
    if not external_id:
        return BadRow(row.where, None, "external_id", "required: the clinic's id for this patient")
    if len(external_id) > EXTERNAL_ID_MAX or not external_id.isprintable():
        return BadRow(row.where, None, "external_id", f"must be at most {EXTERNAL_ID_MAX} printable characters")
    try:
        data = TriageIn.model_validate(fields)
        contact = check_contact(data, region, allowed)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "row"
        more = exc.error_count() - 1
        message = str(first["msg"]) + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")
        return BadRow(row.where, external_id, field, message)
    except InputError as exc:
        return BadRow(row.where, external_id, exc.field, exc.message)
    return GoodRow(row.where, external_id, data, contact)
