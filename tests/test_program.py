"""The follow-up program: the shipped clinic/program.toml, which steps a patient's answers select, and the errors a
wrong program file gives (naming the step and the key)."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest
from factories import calm_answers

from followup.core.program import Program, ProgramError, load_program
from followup.core.triage import Answers, answer_fields

ROOT = Path(__file__).resolve().parent.parent
EVERYONE = ["welcome", "nutrition", "checkin_1", "video", "checkin_2", "at_rest", "checkin_3", "recap"]
EVERYONE += ["checkin_4", "checkin_5", "checkin_6", "closing"]


@pytest.fixture(scope="module")
def program() -> Program:
    return load_program(ROOT / "clinic/program.toml", answer_fields())


def answers(**over: Any) -> dict[str, Any]:
    """Program-facing answers of a patient with no lifestyle factor at all, with overrides."""
    return Answers.model_validate(calm_answers(**over)).for_program()


def test_shipped_program_loads(program: Program) -> None:
    """clinic/program.toml loads: unique ids, one welcome at enrollment, a closing last, times inside 09:30-18:30."""
    ids = [s.id for s in program.steps]
    assert program.id == "twitching-6w"
    assert len(ids) == len(set(ids)) == 19
    assert program.steps[0].id == "welcome" and program.steps[0].at is None
    assert program.steps[-1].kind == "closing" and program.steps[-1].offset == timedelta(days=45)
    for step in program.steps[1:]:
        assert step.at is not None and time(9, 30) <= step.at <= time(18, 30), step.id
    assert all(s.question == "safety_screen" for s in program.steps if s.kind == "checkin")
    assert [s.offset for s in program.steps] == sorted(s.offset for s in program.steps)


def test_at_most_one_planned_message_a_day(program: Program) -> None:
    """Every step has its own day, so a patient gets at most one planned message a day."""
    days = [s.offset.days for s in program.steps]
    assert len(days) == len(set(days))


def test_patient_without_lifestyle_factors_gets_only_the_steps_for_everyone(program: Program) -> None:
    """A patient with no factor gets the welcome, nutrition, video, at-rest, recap, check-ins and closing."""
    assert [s.id for s in program.steps_for(answers())] == EVERYONE


def test_patient_with_every_factor_gets_every_tip_but_eyelid(program: Program) -> None:
    """A patient with every lifestyle factor gets all 18 steps that do not need eyelid-only twitching."""
    got = {
        s.id
        for s in program.steps_for(
            answers(
                caffeine_per_day=5,
                sleep_hours=5,
                water_glasses=2,
                stress=8,
                intense_exercise=True,
                alcohol_per_week=10,
            )
        )
    }
    assert got == {s.id for s in program.steps} - {"eyelid"}


@pytest.mark.parametrize(
    ("over", "step", "included"),
    [
        ({"caffeine_per_day": 3}, "caffeine", True),
        ({"caffeine_per_day": 2.5}, "caffeine", False),
        ({"sleep_hours": 6.5}, "sleep", True),
        ({"sleep_hours": 7}, "sleep", False),
        ({"water_glasses": 5}, "hydration", True),
        ({"water_glasses": 6}, "hydration", False),
        ({"stress": 5}, "stress", True),
        ({"stress": 4}, "stress", False),
        ({"intense_exercise": True}, "exercise", True),
        ({"intense_exercise": False}, "exercise", False),
        ({"alcohol_per_week": 8}, "alcohol", True),
        ({"alcohol_per_week": 7}, "alcohol", False),
        ({"locations": ["eyelid"]}, "eyelid", True),
        ({"locations": ["eyelids"]}, "eyelid", True),
        ({"locations": ["eyelid", "calf"]}, "eyelid", False),
        ({"locations": []}, "eyelid", False),
    ],
    ids=[
        "caffeine-3-cups",
        "caffeine-2.5-cups",
        "sleep-6.5h",
        "sleep-7h",
        "water-5",
        "water-6",
        "stress-5",
        "stress-4",
        "exercise-yes",
        "exercise-no",
        "alcohol-8",
        "alcohol-7",
        "eyelid-only",
        "eyelid-only-plural",
        "eyelid-and-calf",
        "no-location",
    ],
)
def test_conditions_select_steps(program: Program, over: dict, step: str, included: bool) -> None:
    """Each tip goes only to patients whose answers meet its threshold (>= 3 cups, < 7 h sleep, ...)."""
    ids = [s.id for s in program.steps_for(answers(**over))]
    assert (step in ids) is included
    assert set(EVERYONE) <= set(ids)


GOOD = {"id": '"tip_a"', "kind": '"tip"', "offset": '"P1D"', "at": '"10:00"', "template": '"tip_caffeine"'}


def step_toml(**over: str | None) -> str:
    """One [[steps]] table: GOOD with keys replaced (a value of None drops the key)."""
    fields = {**GOOD, **over}
    return "[[steps]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if v is not None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (step_toml(kind=None), ["tip_a", "kind"]),
        (step_toml(template=None), ["tip_a", "template"]),
        (step_toml(kind='"reminder"'), ["tip_a", "kind"]),
        (step_toml(offset='"-P1D"'), ["tip_a", "offset"]),
        (step_toml(offset='"soon"'), ["tip_a", "offset"]),
        (step_toml(offset="3"), ["tip_a", "offset"]),
        (step_toml(offset='"PT36H"'), ["tip_a", "offset"]),
        (step_toml(at='"25:00"'), ["tip_a", "at"]),
        (step_toml(at='"9:5"'), ["tip_a", "at"]),
        (step_toml(colour='"blue"'), ["tip_a", "colour"]),
        (step_toml(question='"safety_screen"'), ["tip_a", "question"]),
        (step_toml(when='["coffee >= 3"]'), ["tip_a", "when", "coffee"]),
        (step_toml(when='["caffeine_per_day about 3"]'), ["tip_a", "when"]),
        (step_toml(when='["intense_exercise >= true"]'), ["tip_a", "when"]),
        (step_toml(when='["caffeine_per_day >= lots"]'), ["tip_a", "when"]),
        (step_toml(when='"caffeine_per_day >= 3"'), ["tip_a", "when"]),
        (step_toml(when='["locations >= 1"]'), ["tip_a", "when", "locations"]),
        (step_toml(id='"Tip-A"'), ["Tip-A", "id"]),
        (step_toml() + step_toml(), ["steps[1]", "tip_a", "duplicate"]),
        ('[program]\nid = "x"\n', ["no [[steps]]"]),
        ("[[steps]\n", ["not valid TOML"]),
    ],
    ids=[
        "missing-kind",
        "missing-template",
        "unknown-kind",
        "negative-offset",
        "offset-not-duration",
        "offset-bare-number",
        "offset-hours-with-at",
        "at-hour-25",
        "at-not-hhmm",
        "unknown-key",
        "question-on-tip",
        "when-unknown-field",
        "when-bad-operator",
        "when-bool-ordered",
        "when-bad-value",
        "when-not-a-list",
        "when-on-a-list-field",
        "id-bad-characters",
        "duplicate-id",
        "no-steps",
        "broken-toml",
    ],
)
def test_invalid_program_names_step_and_key(tmp_path: Path, text: str, expected: list[str]) -> None:
    """A wrong program file raises ProgramError naming the file, the step and the key at fault."""
    path = tmp_path / "program.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProgramError) as info:
        load_program(path, answer_fields())
    msg = str(info.value)
    assert str(path) in msg
    for part in expected:
        assert part in msg


def test_missing_program_file_is_named(tmp_path: Path) -> None:
    """A program path that does not exist is reported as such."""
    with pytest.raises(ProgramError, match="not found"):
        load_program(tmp_path / "nope.toml", answer_fields())


def test_a_minimal_valid_step_parses(tmp_path: Path) -> None:
    """A step with `at = "now"`, a week offset and a bool condition loads into the expected Step."""
    path = tmp_path / "program.toml"
    path.write_text(step_toml(at='"now"', offset='"P1W"', when='["intense_exercise == true"]'))
    (step,) = load_program(path, answer_fields()).steps
    assert (step.at, step.offset, step.week) == (None, timedelta(days=7), 2)
    assert [str(c) for c in step.when] == ["intense_exercise == true"]
