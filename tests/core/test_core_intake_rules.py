"""Which triage answers are red flags on their own (followup/core/intake_rules.py): the shipped clinic/intake.toml,
the duration threshold at its boundary, and the errors a wrong rules file gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from followup.core.intake_rules import IntakeFlag, IntakeRules, load_intake_rules
from followup.core.triage import Answers

ROOT = Path(__file__).resolve().parents[2]
CALM: dict[str, Any] = {
    "onset_weeks": 2,
    "weakness": False,
    "atrophy": False,
    "daily_activities": False,
    "speech_swallowing": False,
    "breathing": False,
    "numbness_tingling": False,
    "balance": False,
    "severe_cramps": False,
    "caffeine_per_day": 1,
    "sleep_hours": 8,
    "stress": 2,
    "water_glasses": 8,
    "intense_exercise": True,
}


def answers(**over: Any) -> Answers:
    return Answers.model_validate({**CALM, **over})


@pytest.fixture(scope="module")
def shipped() -> IntakeRules:
    return load_intake_rules(ROOT / "clinic/intake.toml")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "intake.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_rules_load(shipped: IntakeRules) -> None:
    """clinic/intake.toml names eleven yes/no answers and a four-week duration rule."""
    assert [f.answer for f in shipped.flags] == [
        "weakness",
        "atrophy",
        "daily_activities",
        "speech_swallowing",
        "breathing",
        "numbness_tingling",
        "balance",
        "severe_cramps",
        "eyelid_closes",
        "face_spread",
        "vision_changes",
    ]
    assert shipped.flags[1] == IntakeFlag("atrophy", "wasting", "muscle wasting reported at triage")
    assert (shipped.persisting_weeks, shipped.persisting_criterion) == (4.0, "persisting")


def test_calm_answers_raise_no_flag(shipped: IntakeRules) -> None:
    """No red-flag answer and a short history: nothing to escalate (a yes that is not a red flag included)."""
    assert shipped.red_flags(answers()) == []


@pytest.mark.parametrize(
    "answer",
    ["weakness", "atrophy", "speech_swallowing", "breathing", "eyelid_closes", "face_spread", "vision_changes"],
)
def test_a_yes_to_a_red_flag_question_is_a_flag(shipped: IntakeRules, answer: str) -> None:
    """A yes to any red-flag question is a flag with that question's criterion and evidence."""
    (flag,) = shipped.red_flags(answers(**{answer: True}))
    assert flag == next(f for f in shipped.flags if f.answer == answer)


def test_every_yes_is_a_flag_in_file_order(shipped: IntakeRules) -> None:
    """Several yeses give one flag each, in the order of the file, and the duration flag last."""
    found = shipped.red_flags(answers(breathing=True, weakness=True, onset_weeks=6))
    assert [(f.answer, f.criterion) for f in found] == [
        ("weakness", "weakness"),
        ("breathing", "breathing"),
        ("onset_weeks", "persisting"),
    ]


@pytest.mark.parametrize(
    ("weeks", "evidence"),
    [(3.9, None), (4, "twitching for 4 weeks"), (4.5, "twitching for 4.5 weeks"), (52, "twitching for 52 weeks")],
    ids=["just-under", "exactly-four", "four-and-a-half", "a-year"],
)
def test_twitching_for_four_weeks_or_more_is_a_flag(shipped: IntakeRules, weeks: float, evidence: str | None) -> None:
    """Twitching that has lasted the threshold (four weeks) or longer is a flag; the evidence says how long."""
    found = shipped.red_flags(answers(onset_weeks=weeks))
    expected = [IntakeFlag("onset_weeks", "persisting", evidence)] if evidence else []
    assert found == expected


def test_a_rules_file_with_defaults(tmp_path: Path) -> None:
    """Without evidence the answer's name is the evidence; without [duration], four weeks and "persisting"."""
    rules = load_intake_rules(write(tmp_path, '[answers]\nweakness = { criterion = "weak" }\n'))
    assert rules == IntakeRules((IntakeFlag("weakness", "weak", "weakness"),), 4.0, "persisting")


def test_an_empty_rules_file_flags_only_the_duration(tmp_path: Path) -> None:
    """An empty file has no answer rule; the default duration rule still applies."""
    rules = load_intake_rules(write(tmp_path, ""))
    assert rules.flags == ()
    assert [f.answer for f in rules.red_flags(answers(weakness=True, onset_weeks=4))] == ["onset_weeks"]


def test_a_rules_file_sets_its_own_duration(tmp_path: Path) -> None:
    """[duration] sets the threshold in weeks and its criterion."""
    rules = load_intake_rules(write(tmp_path, '[duration]\npersisting_weeks = 8.5\ncriterion = "chronic"\n'))
    assert (rules.persisting_weeks, rules.persisting_criterion) == (8.5, "chronic")
    assert rules.red_flags(answers(onset_weeks=8)) == []
    assert rules.red_flags(answers(onset_weeks=8.5)) == [
        IntakeFlag("onset_weeks", "chronic", "twitching for 8.5 weeks")
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[answers]\nmood = { criterion = "x" }\n', "answers.mood: not a triage question"),
        ('[answers]\nweakness = { evidence = "x" }\n', 'answers.weakness: needs criterion = "<red-flag id>"'),
        ('[answers]\nweakness = "weakness"\n', 'answers.weakness: needs criterion = "<red-flag id>"'),
        ('[answers]\nweakness = "criterion"\n', 'answers.weakness: needs criterion = "<red-flag id>"'),
    ],
    ids=["unknown-answer", "no-criterion", "not-a-table", "a-string-that-says-criterion"],
)
def test_a_wrong_rules_file_names_the_answer(tmp_path: Path, text: str, message: str) -> None:
    """A rule on a field that is not a triage question, or without a criterion, is a ValueError naming it."""
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        load_intake_rules(path)
    assert str(info.value) == f"{path}: {message}"
