"""A bulk import file read as rows: CSV with a header, or NDJSON (one JSON object a line, the API's shape).

CSV columns are the triage's own field names, flat: `external_id`, `name`, `phone`, `email`, `channel`, `timezone`,
`language`, `consent`, `consent_text`, then every answer (`onset_weeks`, `weakness`, ...); `locations` is a list
separated by `;`. An empty cell is a field left out (its default applies, or the row is refused naming it). Yes/no
cells take what the API takes (true/false, yes/no, 1/0). Line numbers are the file's own, header included.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from followup.core.bulk import RawRow
from followup.core.triage import Answers, TriageIn

TOP = frozenset(TriageIn.model_fields) - {"answers"}
ANSWERS = frozenset(Answers.model_fields)
COLUMNS = TOP | ANSWERS | {"external_id"}


class FileError(ValueError):
    """The file as a whole cannot be read (its format, its header); the message says what to fix."""


def kind_of(path: Path, head: str) -> str:
    """ "csv" or "ndjson": by the extension, else by the first character that is not blank."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".ndjson", ".jsonl", ".json"):
        return "ndjson"
    return "ndjson" if head.lstrip().startswith("{") else "csv"


def read_rows(path: Path, fh: IO[str]) -> Iterator[RawRow]:
    """The rows of an open text file, in order (`fh` is read as a stream: a large file is never held whole)."""
    head = fh.read(4096)
    rest = _chain(head, fh)
    if kind_of(path, head) == "csv":
        return csv_rows(rest)
    return ndjson_rows(rest)


def _chain(head: str, fh: IO[str]) -> Iterator[str]:
    """The file's lines again, the first 4 KiB (already read to tell its kind) included."""
    pending = head
    for chunk in iter(lambda: fh.read(1 << 16), ""):
        pending += chunk
        *lines, pending = pending.split("\n")
        for line in lines:
            yield line + "\n"
    if pending:
        *lines, pending = pending.split("\n")
        yield from (line + "\n" for line in lines)
        if pending:
            yield pending


def ndjson_rows(lines: Iterable[str]) -> Iterator[RawRow]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RawRow(number, None, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(value, dict):
            yield RawRow(number, None, "not a JSON object")
            continue
        yield RawRow(number, value)


def csv_rows(lines: Iterable[str]) -> Iterator[RawRow]:
    counter = _Counted(lines)
    reader = csv.reader(counter)
    header_row = next(reader, None)
    if header_row is None:
        raise FileError("the file is empty: expected a header line naming the columns")
    header = [h.strip().lower().removeprefix("answers.") for h in header_row]
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise FileError(
            f"line 1: unknown column(s) {', '.join(repr(h) for h in unknown)}; the columns are external_id, "
            f"{', '.join(sorted(TOP))} and the answers {', '.join(sorted(ANSWERS))}"
        )
    if "external_id" not in header:
        raise FileError("line 1: no external_id column (the clinic's id for each patient, which makes reruns safe)")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise FileError(f"line 1: column(s) {', '.join(repeated)} given twice")
    start = counter.count + 1
    for cells in reader:
        where, start = start, counter.count + 1
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            yield RawRow(where, None, f"has {len(cells)} cells; the header has {len(header)}")
            continue
        yield RawRow(where, _fields(header, cells))


def _fields(header: list[str], cells: list[str]) -> dict[str, Any]:
    top: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    for name, cell in zip(header, cells, strict=True):
        value = cell.strip()
        if not value:
            continue
        if name == "locations":
            answers[name] = [x.strip() for x in value.split(";") if x.strip()]
        elif name in ANSWERS:
            answers[name] = value
        else:
            top[name] = value
    top["answers"] = answers
    return top


class _Counted:
    """Lines passed through, counted: the csv reader's records may span lines (a quoted newline)."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.count = 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        return line
