"""The shared test data (tests/factories.py) is what the service accepts, and the red-flag question lists it is
built from match the triage model."""

from __future__ import annotations

from factories import answers, calm_answers, intake_form, triage_body

from followup.core.triage import OPTIONAL_RED_FLAG_QUESTIONS, RED_FLAG_QUESTIONS, Answers, TriageIn


def test_red_flag_questions_are_the_yes_no_triage_questions() -> None:
    """RED_FLAG_QUESTIONS are Answers' required yes/no questions but exercise; the optional ones default to no."""
    fields = Answers.model_fields
    yes_no = {name for name, f in fields.items() if f.annotation in (bool, "bool")} - {"intense_exercise"}
    assert set(RED_FLAG_QUESTIONS) | set(OPTIONAL_RED_FLAG_QUESTIONS) == yes_no
    assert all(fields[q].is_required() for q in RED_FLAG_QUESTIONS)
    assert all(fields[q].default is False for q in OPTIONAL_RED_FLAG_QUESTIONS)


def test_sample_answers_are_valid_and_raise_no_red_flag() -> None:
    """Both sample answer sets validate, every red-flag question answered no, and overrides apply."""
    for sample in (answers(), calm_answers()):
        a = Answers.model_validate(sample)
        assert not any(getattr(a, q) for q in RED_FLAG_QUESTIONS + OPTIONAL_RED_FLAG_QUESTIONS)
    assert Answers.model_validate(answers(weakness=True)).weakness
    assert TriageIn.model_validate(triage_body(answers={"sleep_hours": 8})).answers.sleep_hours == 8


def test_intake_form_answers_every_question_and_drops_none() -> None:
    """The sample form answers each red-flag question "no"; a None override leaves the field out."""
    form = intake_form(email=None)
    assert all(form[q] == "no" for q in RED_FLAG_QUESTIONS + OPTIONAL_RED_FLAG_QUESTIONS)
    assert "email" not in form and form["phone"] == "(310) 555-0142"
