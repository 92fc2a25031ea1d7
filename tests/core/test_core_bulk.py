"""One bulk-import row checked (followup/core/bulk.py) and the import file read as rows
(followup/parsing/import_file.py), pure: the external id's rules, the field a triage problem names, line numbers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from followup.core.bulk import EXTERNAL_ID_MAX, BadRow, GoodRow, RawRow, check_row
from followup.parsing.import_file import FileError, kind_of, read_rows

ANSWERS: dict[str, Any] = {
    "onset_weeks": 2,
    "locations": ["calf"],
    "weakness": False,
    "atrophy": False,
    "daily_activities": False,
    "speech_swallowing": False,
    "breathing": False,
    "numbness_tingling": False,
    "balance": False,
    "severe_cramps": False,
    "caffeine_per_day": 2,
    "sleep_hours": 7,
    "stress": 3,
    "water_glasses": 6,
    "intense_exercise": False,
}


def fields(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "external_id": "MRN-1",
        "name": "Ana Diaz",
        "phone": "+1 310 555 0142",
        "channel": "sms",
        "timezone": "America/Los_Angeles",
        "consent": True,
        "answers": dict(ANSWERS),
    }
    return {k: v for k, v in {**base, **over}.items() if v is not ...}


@pytest.mark.parametrize(
    ("over", "field", "message"),
    [
        ({"external_id": ...}, "external_id", "required: the clinic's id for this patient"),
        ({"external_id": "  "}, "external_id", "required: the clinic's id for this patient"),
        ({"external_id": True}, "external_id", "must be text or a whole number"),
        ({"external_id": 1.5}, "external_id", "must be text or a whole number"),
        ({"external_id": "x" * (EXTERNAL_ID_MAX + 1)}, "external_id", "must be at most 100 printable characters"),
        ({"external_id": "MRN\x001"}, "external_id", "must be at most 100 printable characters"),
        ({"phone": "12345"}, "phone", "is not a valid phone number"),
        ({"consent": False}, "consent", "the patient must agree to receive messages"),
        ({"answers": {**ANSWERS, "stress": 11}}, "answers.stress", "Input should be less than or equal to 10"),
        ({"name": "", "channel": "fax"}, "name", "String should have at least 1 character (and 1 more problem)"),
        ({"shoe": 42}, "shoe", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_row_names_its_field_and_problem(over: dict[str, Any], field: str, message: str) -> None:
    """Each problem is reported on the field at fault, in the API's own words; the row's place is kept."""
    got = check_row(RawRow(7, fields(**over)), "US")
    assert got == BadRow(7, got.external_id, field, message)


def test_a_good_row_carries_its_id_and_normalised_contact() -> None:
    """A whole number id becomes text; the phone is E.164, as the API stores it."""
    got = check_row(RawRow(3, fields(external_id=1234)), "US")
    assert isinstance(got, GoodRow)
    assert (got.where, got.external_id, got.contact.phone, got.contact.email) == (3, "1234", "+13105550142", None)


def test_an_unreadable_row_is_bad_with_its_reason() -> None:
    """A row that could not be read is reported as itself (field "row"), with what was wrong."""
    assert check_row(RawRow(4, None, "not a JSON object"), "US") == BadRow(4, None, "row", "not a JSON object")


@pytest.mark.parametrize(
    ("name", "head", "kind"),
    [
        ("a.csv", "{", "csv"),
        ("a.CSV", "", "csv"),
        ("a.ndjson", "x,y", "ndjson"),
        ("a.jsonl", "", "ndjson"),
        ("a.json", "", "ndjson"),
        ("a.txt", '  {"a": 1}', "ndjson"),
        ("a", "external_id,name", "csv"),
    ],
)
def test_the_kind_of_file_is_told_by_extension_then_content(name: str, head: str, kind: str) -> None:
    """The extension decides; without a known one, a first character `{` means NDJSON, anything else CSV."""
    assert kind_of(Path(name), head) == kind


def test_csv_cells_become_the_api_shape() -> None:
    """Flat cells go to the top level or to answers; empty cells are left out; locations split on `;`."""
    text = "external_id,name,email,sleep_hours,locations\nA1,Ana,,6,calf; eyelid\n"
    (row,) = read_rows(Path("p.csv"), io.StringIO(text))
    assert row == RawRow(
        2, {"external_id": "A1", "name": "Ana", "answers": {"sleep_hours": "6", "locations": ["calf", "eyelid"]}}
    )


def test_csv_rows_with_the_wrong_number_of_cells_are_reported_and_blank_lines_skipped() -> None:
    """A row with more or fewer cells than the header is unreadable, on its own line; blank lines count."""
    text = "external_id,name\nA,Ana\n\nB\nC,Cy,extra\nD,Di\n"
    got = [(r.where, r.problem) for r in read_rows(Path("p.csv"), io.StringIO(text))]
    assert got == [(2, None), (4, "has 1 cells; the header has 2"), (5, "has 3 cells; the header has 2"), (6, None)]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "the file is empty"),
        ("name,shoe\n", "unknown column(s) 'shoe'"),
        ("name,phone\n", "no external_id column"),
        ("external_id,name,Name\n", "column(s) name given twice"),
    ],
)
def test_a_bad_csv_header_refuses_the_whole_file(text: str, says: str) -> None:
    """The header is checked before any row: what is wrong with it is named."""
    with pytest.raises(FileError, match=None) as exc:
        list(read_rows(Path("p.csv"), io.StringIO(text)))
    assert says in str(exc.value)


def test_long_files_are_read_in_pieces_with_every_line() -> None:
    """A file longer than the 4 KiB looked at first, with no newline at its end, loses no line."""
    lines = [f'{{"external_id": "{i}"}}' for i in range(500)]
    rows = list(read_rows(Path("p.ndjson"), io.StringIO("\n".join(lines))))
    assert [r.where for r in rows] == list(range(1, 501)) and rows[-1].fields == {"external_id": "499"}
