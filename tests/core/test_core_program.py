"""The follow-up program's rules (followup/core/program.py), table-driven: a condition at, below and above its
threshold, with every operator, true/false and a missing answer; how a condition and a step are read; and the
exact error a wrong program file gives."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest

from followup.core.program import Condition, Program, ProgramError, Step, load_program, parse_condition

FIELDS: dict[str, type] = {"stress": object, "sleep_hours": object, "eyelid_only": bool, "intense_exercise": bool}

# (op, answer, holds) against a threshold of 3: equal to it, below it and above it.
NUMERIC = [
    (">=", 3, True),
    (">=", 2.9, False),
    (">=", 4, True),
    ("<=", 3, True),
    ("<=", 2, True),
    ("<=", 3.1, False),
    (">", 3, False),
    (">", 4, True),
    (">", 2, False),
    ("<", 3, False),
    ("<", 2, True),
    ("<", 4, False),
    ("==", 3, True),
    ("==", 3.0, True),
    ("==", 2, False),
    ("==", 4, False),
    ("!=", 3, False),
    ("!=", 2, True),
    ("!=", 4, True),
]


@pytest.mark.parametrize(("op", "answer", "holds"), NUMERIC)
def test_a_numeric_condition_at_below_and_above_its_threshold(op: str, answer: float, holds: bool) -> None:
    """`stress <op> 3` holds as arithmetic says, an answer equal to the threshold included."""
    assert Condition("stress", op, 3.0).holds({"stress": answer}) is holds


@pytest.mark.parametrize("op", [">=", "<=", ">", "<", "==", "!="])
@pytest.mark.parametrize("answers", [{}, {"stress": None}, {"other": 3}], ids=["absent", "none", "other-field"])
def test_a_condition_on_a_missing_answer_never_holds(op: str, answers: dict[str, Any]) -> None:
    """A condition whose answer is missing (absent or None) does not hold, whatever its operator, != included."""
    assert Condition("stress", op, 3.0).holds(answers) is False
    assert Condition("stress", op, True).holds(answers) is False


@pytest.mark.parametrize(
    ("op", "value", "answer", "holds"),
    [
        ("==", True, True, True),
        ("==", True, False, False),
        ("==", False, False, True),
        ("==", False, True, False),
        ("!=", True, True, False),
        ("!=", True, False, True),
        ("!=", False, True, True),
        ("!=", False, False, False),
        ("==", True, 2, True),
        ("==", False, 0, True),
        (">=", True, True, False),
        (">=", False, False, False),
        ("<", True, False, False),
    ],
    ids=[
        "eq-true-yes",
        "eq-true-no",
        "eq-false-no",
        "eq-false-yes",
        "ne-true-yes",
        "ne-true-no",
        "ne-false-yes",
        "ne-false-no",
        "truthy-number-is-true",
        "zero-is-false",
        "ordered-never-holds-true",
        "ordered-never-holds-false",
        "less-never-holds",
    ],
)
def test_a_true_false_condition(op: str, value: bool, answer: Any, holds: bool) -> None:
    """A true/false condition compares the answer's truth with == or !=; any other operator never holds."""
    assert Condition("eyelid_only", op, value).holds({"eyelid_only": answer}) is holds


@pytest.mark.parametrize(
    ("condition", "text"),
    [
        (Condition("sleep_hours", "<", 7.0), "sleep_hours < 7.0"),
        (Condition("eyelid_only", "==", True), "eyelid_only == true"),
        (Condition("intense_exercise", "!=", False), "intense_exercise != false"),
    ],
)
def test_a_condition_reads_as_written(condition: Condition, text: str) -> None:
    """A condition prints as `field op value`, with true/false in lower case."""
    assert str(condition) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sleep_hours < 7", Condition("sleep_hours", "<", 7.0)),
        ("  stress>=5  ", Condition("stress", ">=", 5.0)),
        ("stress <= 2.5", Condition("stress", "<=", 2.5)),
        ("stress > -1", Condition("stress", ">", -1.0)),
        ("stress == 1e1", Condition("stress", "==", 10.0)),
        ("stress != 0", Condition("stress", "!=", 0.0)),
        ("eyelid_only == true", Condition("eyelid_only", "==", True)),
        ("intense_exercise != false", Condition("intense_exercise", "!=", False)),
        ("intense_exercise == false", Condition("intense_exercise", "==", False)),
    ],
)
def test_parse_condition(text: str, expected: Condition) -> None:
    """`field op value` is read with any spacing; a value is a number, or true/false."""
    got = parse_condition(text, FIELDS)
    assert got == expected
    assert type(got.value) is type(expected.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stress => 5", "'stress => 5' is not 'field op value' (ops: >= <= > < == !=)"),
        ("stress 5", "'stress 5' is not 'field op value' (ops: >= <= > < == !=)"),
        ("Stress >= 5", "'Stress >= 5' is not 'field op value' (ops: >= <= > < == !=)"),
        (
            "coffee >= 3",
            "unknown triage field 'coffee' (known: eyelid_only, intense_exercise, sleep_hours, stress)",
        ),
        ("eyelid_only >= true", "'eyelid_only >= true': true/false only compare with == or !="),
        ("eyelid_only < false", "'eyelid_only < false': true/false only compare with == or !="),
        ("stress >= lots", "'stress >= lots': value must be a number or true/false"),
        ("stress == True", "'stress == True': value must be a number or true/false"),
    ],
    ids=[
        "bad-operator",
        "no-operator",
        "capital-letter",
        "unknown-field",
        "ordered-true",
        "ordered-false",
        "word",
        "True",
    ],
)
def test_a_wrong_condition_says_what_is_wrong(text: str, message: str) -> None:
    """A condition that cannot be read is a ValueError saying which part is wrong."""
    with pytest.raises(ValueError) as info:
        parse_condition(text, FIELDS)
    assert str(info.value) == message


@pytest.mark.parametrize(("days", "week"), [(0, 1), (6, 1), (7, 2), (13, 2), (14, 3), (45, 7)])
def test_a_steps_week_counts_from_one(days: int, week: int) -> None:
    """Days 0-6 after enrollment are week 1, days 7-13 week 2, and so on."""
    assert Step("s", "tip", timedelta(days=days, hours=5), None, "t").week == week


def test_a_step_applies_only_when_all_its_conditions_hold() -> None:
    """A step with conditions is for a patient when every one holds; one without is for everyone."""
    both = (Condition("stress", ">=", 5.0), Condition("sleep_hours", "<", 7.0))
    program = Program(
        "p",
        "P",
        (
            Step("everyone", "tip", timedelta(0), None, "t"),
            Step("both", "tip", timedelta(days=1), time(10, 0), "t", both),
            Step("stress", "tip", timedelta(days=2), time(10, 0), "t", both[:1]),
        ),
    )
    cases = [({"stress": 5, "sleep_hours": 6}, ["everyone", "both", "stress"])]
    cases += [({"stress": 5, "sleep_hours": 7}, ["everyone", "stress"])]
    cases += [({"stress": 4, "sleep_hours": 6}, ["everyone"])]
    cases += [({}, ["everyone"])]
    for answers, ids in cases:
        assert [s.id for s in program.steps_for(answers)] == ids, answers


def write(tmp_path: Path, text: str, name: str = "program.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = {"id": '"tip_a"', "kind": '"tip"', "offset": '"P1D"', "at": '"10:00"', "template": '"tip_caffeine"'}


def step_toml(**over: str | None) -> str:
    """One [[steps]] table: GOOD with keys replaced (a value of None drops the key)."""
    fields = {**GOOD, **over}
    return "[[steps]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if v is not None)


FULL = """
[program]
id = "twitch"
name = "Twitching, six weeks"

[[steps]]
id = "welcome"
kind = "welcome"
offset = "P0D"
template = "welcome"

[[steps]]
id = "checkin_1"
kind = "checkin"
offset = "P1W"
at = "09:45"
template = "checkin"
when = ["stress >= 5", "eyelid_only == false"]
question = "safety_screen"

[[steps]]
id = "late_tip_2"
kind = "tip"
offset = "P1DT1H"
at = "now"
template = "tip"

[[steps]]
id = 7
kind = "closing"
offset = "P45D"
at = "23:59"
template = 12
"""


def test_a_program_file_loads_every_key_of_every_step(tmp_path: Path) -> None:
    """Every key of a step is read: id, kind, offset, at ("now" or absent is None), template, when, question."""
    program = load_program(write(tmp_path, FULL), FIELDS)
    assert (program.id, program.name) == ("twitch", "Twitching, six weeks")
    assert program.steps == (
        Step("welcome", "welcome", timedelta(0), None, "welcome"),
        Step(
            "checkin_1",
            "checkin",
            timedelta(days=7),
            time(9, 45),
            "checkin",
            (Condition("stress", ">=", 5.0), Condition("eyelid_only", "==", False)),
            "safety_screen",
        ),
        Step("late_tip_2", "tip", timedelta(days=1, hours=1), None, "tip"),
        Step("7", "closing", timedelta(days=45), time(23, 59), "12"),
    )


def test_a_program_without_a_program_table_is_named_after_its_file(tmp_path: Path) -> None:
    """Without [program], the id and the name are the file's stem."""
    program = load_program(write(tmp_path, step_toml(), "six_weeks.toml"), FIELDS)
    assert (program.id, program.name, [s.id for s in program.steps]) == ("six_weeks", "six_weeks", ["tip_a"])


@pytest.mark.parametrize(("at", "expected"), [("00:00", time(0, 0)), ("09:05", time(9, 5)), ("19:30", time(19, 30))])
def test_at_reads_hours_and_minutes(tmp_path: Path, at: str, expected: time) -> None:
    """`at` is a 24-hour HH:MM."""
    text = f'[[steps]]\nid = "a"\nkind = "tip"\noffset = "P1D"\nat = "{at}"\ntemplate = "t"\n'
    assert load_program(write(tmp_path, text), FIELDS).steps[0].at == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (step_toml(id=None), "steps[0] (?): missing key 'id'"),
        (step_toml(kind=None), "steps[0] (tip_a): missing key 'kind'"),
        (step_toml(offset=None), "steps[0] (tip_a): missing key 'offset'"),
        (step_toml(template=None), "steps[0] (tip_a): missing key 'template'"),
        (step_toml(colour='"blue"', size="1"), "steps[0] (tip_a): unknown key(s) colour, size"),
        (step_toml(id='"Tip-A"'), "steps[0] (Tip-A): id must be lower-case letters, digits and _"),
        (step_toml(id='"tip a"'), "steps[0] (tip a): id must be lower-case letters, digits and _"),
        (step_toml(id='""'), "steps[0] (): id must be lower-case letters, digits and _"),
        (step_toml(kind='"reminder"'), "steps[0] (tip_a): kind must be one of welcome, tip, checkin, closing"),
        (step_toml(offset="3"), 'steps[0] (tip_a): offset must be an ISO 8601 duration such as "P3D", got 3'),
        (
            step_toml(offset='"soon"'),
            "steps[0] (tip_a): offset must be an ISO 8601 duration such as \"P3D\", got 'soon'",
        ),
        (step_toml(offset='"-P1D"'), "steps[0] (tip_a): offset must not be negative"),
        (step_toml(offset='"-PT1S"'), "steps[0] (tip_a): offset must not be negative"),
        (step_toml(offset='"PT36H"'), "steps[0] (tip_a): offset: use whole days (e.g. P3D) with a clock time in 'at'"),
        (step_toml(offset='"P1DT1S"'), "steps[0] (tip_a): offset: use whole days (e.g. P3D) with a clock time in 'at'"),
        (step_toml(at='"24:00"'), "steps[0] (tip_a): at must be 'now' or HH:MM, got '24:00'"),
        (step_toml(at='"23:60"'), "steps[0] (tip_a): at must be 'now' or HH:MM, got '23:60'"),
        (step_toml(at='"9:05"'), "steps[0] (tip_a): at must be 'now' or HH:MM, got '9:05'"),
        (step_toml(at='"Now"'), "steps[0] (tip_a): at must be 'now' or HH:MM, got 'Now'"),
        (step_toml(question='"safety_screen"'), "steps[0] (tip_a): only checkin steps ask a question"),
        (
            step_toml(when='"stress >= 5"'),
            'steps[0] (tip_a): when: must be a list of conditions, e.g. ["sleep_hours < 7"]',
        ),
        (step_toml(when='["stress >= 5", "mood < 3"]'), "steps[0] (tip_a): when: unknown triage field 'mood'"),
        (step_toml(when="[3]"), "steps[0] (tip_a): when: '3' is not 'field op value'"),
        (step_toml() + step_toml(id='"tip_b"') + step_toml(), "steps[2] (tip_a): duplicate step id"),
        ('[program]\nid = "x"\n', "no [[steps]]"),
        ("", "no [[steps]]"),
        ("[[steps]\n", "not valid TOML: Expected ']]' at the end of an array declaration (at line 1, column 8)"),
    ],
    ids=[
        "missing-id",
        "missing-kind",
        "missing-offset",
        "missing-template",
        "unknown-keys",
        "id-capitals",
        "id-space",
        "id-empty",
        "unknown-kind",
        "offset-bare-number",
        "offset-not-duration",
        "offset-negative",
        "offset-a-second-negative",
        "offset-hours-with-at",
        "offset-a-second-with-at",
        "at-24",
        "at-minute-60",
        "at-one-digit-hour",
        "at-capital-now",
        "question-on-tip",
        "when-not-a-list",
        "when-unknown-field",
        "when-not-text",
        "duplicate-id",
        "no-steps",
        "empty-file",
        "broken-toml",
    ],
)
def test_a_wrong_program_file_names_the_step_and_the_fault(tmp_path: Path, text: str, message: str) -> None:
    """A wrong program file is a ProgramError: the file, the step's index and id, then what is wrong."""
    path = write(tmp_path, text)
    with pytest.raises(ProgramError) as info:
        load_program(path, FIELDS)
    assert str(info.value).startswith(f"{path}: {message}")


def test_a_missing_program_file_is_named(tmp_path: Path) -> None:
    """A program path that does not exist is a ProgramError naming it."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ProgramError) as info:
        load_program(path, FIELDS)
    assert str(info.value) == f"{path}: program file not found"
