"""Core decisions do not depend on the machine they run on: the clinic's files are read as UTF-8 whatever the
host's locale, and times come out in UTC whatever the host's time zone."""

from __future__ import annotations

import locale
import time as host_time
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from followup.core.calendar import Calendar, calendar_slots
from followup.core.intake_rules import load_intake_rules
from followup.core.keywords import load_keywords
from followup.core.program import Step, load_program
from followup.core.schedule import Window, planned_send, step_due, wall_clock

LA = ZoneInfo("America/Los_Angeles")


@pytest.fixture
def host_in_ascii_locale() -> Iterator[None]:
    """The process's character locale set to "C" (ASCII), as on a server started without LANG, for one test."""
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, before)


@pytest.fixture
def host_in_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's own zone set to New York for one test (the patient's zone is passed in, never the host's)."""
    monkeypatch.setenv("TZ", "America/New_York")
    host_time.tzset()
    yield
    monkeypatch.undo()
    host_time.tzset()


@pytest.mark.usefixtures("host_in_ascii_locale")
def test_clinic_files_are_read_as_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """The program, keywords and intake rules files are UTF-8: "sí" and "señal" survive an ASCII locale."""
    assert locale.getpreferredencoding(False) != "UTF-8"
    program = tmp_path / "program.toml"
    program.write_text(
        '[program]\nname = "Seguimiento, sí"\n[[steps]]\nid = "a"\nkind = "tip"\noffset = "P0D"\ntemplate = "t"\n',
        encoding="utf-8",
    )
    keywords = tmp_path / "keywords.toml"
    keywords.write_text('[keywords]\nopt_in = ["sí"]\n', encoding="utf-8")
    intake = tmp_path / "intake.toml"
    intake.write_text('[answers]\nweakness = { criterion = "weakness", evidence = "señal" }\n', encoding="utf-8")
    assert load_program(program, {}).name == "Seguimiento, sí"
    assert load_keywords(keywords).keyword("SÍ") == "opt_in"
    assert load_intake_rules(intake).flags[0].evidence == "señal"


@pytest.mark.usefixtures("host_in_new_york")
def test_times_are_utc_whatever_the_hosts_zone() -> None:
    """Due times, planned sends and booking slots come out in UTC (offset zero), not in the host's zone."""
    assert host_time.localtime(0).tm_gmtoff == -5 * 3600
    enrolled = datetime(2026, 11, 25, 10, 0, tzinfo=LA).astimezone(UTC)
    tip = Step("s", "tip", timedelta(days=1), time(6, 0), "t")
    calendar = Calendar({3: [(time(9), time(10))]}, timedelta(hours=1), 2, frozenset(), LA, timedelta(0), timedelta(0))
    got = [
        wall_clock(enrolled.date(), time(10, 0), LA),
        step_due(tip, enrolled, LA),
        planned_send(tip, enrolled, LA, Window(time(9), time(20))),
        *calendar_slots(calendar, enrolled),
    ]
    assert len(got) == 4
    assert all(t.utcoffset() == timedelta(0) for t in got)
