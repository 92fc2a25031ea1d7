"""Red-flag detection: labelled replies, modifiers, rules, the criteria file's checks and the check command."""

from __future__ import annotations

import io
import json
import logging
import re
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from spacy.schemas import validate_token_pattern

from followup.cli.check import format_verdict, run_check
from followup.redflags import CriteriaError, Detector, Question, ReplyContext, Verdict
from followup.redflags.load import load_rulebook
from followup.redflags.normalise import edit_distance

ROOT = Path(__file__).resolve().parent.parent
CRITERIA = ROOT / "clinic" / "red_flags.toml"
CASE_FILES = ("redflag_cases.toml", "redflag_cases_es.toml")
CASES = [
    case
    for name in CASE_FILES
    for case in tomllib.loads((Path(__file__).parent / name).read_text(encoding="utf-8"))["case"]
]
DEV_SET = ROOT.parent / "shared" / "eval" / "replies.jsonl"


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector.from_file(CRITERIA)


def _case_id(i: int, case: dict) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", case["text"].lower())[:40].strip("-")
    return f"{i:03d}-{case['level']}-{slug or 'empty'}"


def _context(detector: Detector, case: dict) -> ReplyContext:
    question = detector.question(case["question"]) if "question" in case else None
    return ReplyContext(weeks_since_onset=case.get("weeks"), last_question=question)


@pytest.mark.parametrize("case", CASES, ids=[_case_id(i, c) for i, c in enumerate(CASES)])
def test_labelled_reply(detector: Detector, case: dict) -> None:
    """Each labelled reply gets its level, the criteria named, and the suppression reason named."""
    verdict = detector.assess(case["text"], _context(detector, case))
    assert verdict.level == case["level"], verdict.explanation()
    for criterion in case.get("criteria", []):
        assert criterion in verdict.criteria, verdict.explanation()
    if "reason" in case:
        assert case["reason"] in {s.reason for s in verdict.suppressed}, verdict.explanation()


def test_cases_cover_every_criterion() -> None:
    """The labelled cases name every criterion of the clinic's file at least once."""
    named = {c for case in CASES for c in case.get("criteria", [])}
    assert set(load_rulebook(CRITERIA).criteria) <= named


@pytest.mark.skipif(not DEV_SET.exists(), reason="shared development set not present")
def test_development_set() -> None:
    """With both layers on (rules and learned), the shared development set scores escalation recall 1.0,
    emergency recall >= 0.95 and specificity >= 0.90 (review items count as escalations)."""
    from followup.parsing.mailtext import extract_reply
    from followup.redflags import Screen

    screen = Screen.from_file(CRITERIA)
    cases = [json.loads(line) for line in DEV_SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    got = {}
    for case in cases:
        text = extract_reply(case["text"]) if case.get("channel") == "email" else case["text"]
        got[case["id"]] = screen.assess(text).level
    escalations = [c for c in cases if c["gold"] in ("emergency", "red_flag")]
    emergencies = [c for c in cases if c["gold"] == "emergency"]
    benign = [c for c in cases if c["gold"] == "none"]
    missed = [c["id"] for c in escalations if got[c["id"]] == "none"]
    assert not missed, f"escalations answered none: {missed}"
    assert sum(got[c["id"]] in c["accept"] for c in emergencies) >= 0.95 * len(emergencies)
    alarmed = [c["id"] for c in benign if got[c["id"]] not in c["accept"]]
    assert len(alarmed) <= 0.10 * len(benign), f"benign replies escalated: {alarmed}"


# --- the verdict's shape ----------------------------------------------------------------------------------


def test_verdict_fields_and_json(detector: Detector) -> None:
    """A verdict carries level, tier, criteria, findings and suppressions, and its dict is JSON."""
    verdict = detector.assess("no numbness, but I'm choking and my hand is weak")
    assert verdict.level == "emergency" and verdict.tier == "emergency"
    assert verdict.criteria[0] == "choking" and "weakness" in verdict.criteria
    data = json.loads(json.dumps(verdict.to_dict()))
    assert set(data) >= {"level", "tier", "criteria", "evidence", "findings", "suppressed"}
    assert data["suppressed"] == [
        {"criterion": "sensory", "text": "numbness", "start": 3, "end": 11, "reason": "negated"}
    ]


@pytest.mark.parametrize(
    "text",
    [
        "My right hand feels WEAKER than it used to",
        "cant breath n my legs r weeker",
        "Twitching for 8 weeks.   It’s spreading to my arm",
    ],
)
def test_evidence_is_the_patients_own_text(detector: Detector, text: str) -> None:
    """Every finding's text is exactly the slice of the reply at its offsets."""
    verdict = detector.assess(text)
    assert verdict.findings
    for f in verdict.findings:
        assert text[f.start : f.end] == f.text


def test_findings_highest_tier_first(detector: Detector) -> None:
    """Criteria and findings are ordered emergency, urgent, routine."""
    verdict = detector.assess("my feet tingle, my speech is slurred and I fainted")
    assert verdict.criteria == ("collapse", "speech", "sensory")
    assert [f.tier for f in verdict.findings] == ["emergency", "urgent", "routine"]


@pytest.mark.parametrize(
    ("text", "level", "tier"),
    [
        ("I fainted", "emergency", "emergency"),
        ("hard to swallow", "red_flag", "urgent"),
        ("my hand is weak", "red_flag", "routine"),
        ("all good", "none", None),
    ],
)
def test_level_from_tier(detector: Detector, text: str, level: str, tier: str | None) -> None:
    """Emergency tier gives "emergency"; urgent and routine give "red_flag"; nothing gives "none"."""
    verdict = detector.assess(text)
    assert (verdict.level, verdict.tier) == (level, tier)


@pytest.mark.parametrize(
    ("text", "context", "rule"),
    [
        ("my arm feels weaker", None, "pattern:weakness#1"),
        ("I can't swallow", None, "inability:choking#1"),
        ("suddenly my hand went weak", None, "onset:sudden+weakness"),
        ("twitching for 8 weeks", None, "duration:8w"),
        ("still twitching", ReplyContext(weeks_since_onset=6), "context:persisting>=4w"),
    ],
)
def test_rule_names(detector: Detector, text: str, context: ReplyContext | None, rule: str) -> None:
    """Each finding names the pattern, modifier rule or context rule that fired."""
    assert rule in {f.rule for f in detector.assess(text, context).findings}


def test_explanation_has_one_sentence_per_item(detector: Detector) -> None:
    """The explanation gives one line per finding and per suppression."""
    verdict = detector.assess("no weakness but my feet are numb")
    lines = verdict.explanation().splitlines()
    assert len(lines) == len(verdict.findings) + len(verdict.suppressed) == 2
    assert "negated" not in lines[1] and "absent" in lines[1]
    assert detector.assess("thanks").explanation() == "No red-flag criterion mentioned."


# --- context: time since onset and the last question -------------------------------------------------


@pytest.mark.parametrize(
    ("weeks", "level"), [(None, "none"), (0.5, "none"), (3.9, "none"), (4, "red_flag"), (12, "red_flag")]
)
def test_still_twitching_counts_from_four_weeks(detector: Detector, weeks: float | None, level: str) -> None:
    """ "still there" is persisting only when onset was at least four weeks ago."""
    context = ReplyContext(weeks_since_onset=weeks)
    assert detector.assess("the twitching is still there, no change", context).level == level


@pytest.mark.parametrize("weeks", [None, 1, 10])
def test_stated_duration_escalates_in_any_week(detector: Detector, weeks: float | None) -> None:
    """A stated duration of weeks escalates whatever the time since onset."""
    verdict = detector.assess("it's been two months of twitching", ReplyContext(weeks_since_onset=weeks))
    assert verdict.criteria == ("persisting",)


@pytest.mark.parametrize(
    ("reply", "criteria"),
    [
        ("YES", ("weakness",)),
        ("Y", ("weakness",)),
        ("yep", ("weakness",)),
        ("not sure", ("weakness",)),
        ("no", ()),
        ("N", ()),
        ("nope, fine", ()),
    ],
)
def test_short_answers_read_against_the_question(detector: Detector, reply: str, criteria: tuple) -> None:
    """ "YES"/"y"/"not sure" to a question maps to its criteria; "no" maps to none."""
    context = ReplyContext(last_question=detector.question("weakness_check"))
    assert detector.assess(reply, context).criteria == criteria
    assert detector.assess(reply).criteria == ()


def test_answer_rule_names_the_question(detector: Detector) -> None:
    """A mapped answer's rule says answer and the question id."""
    context = ReplyContext(last_question=detector.question("weakness_check"))
    assert detector.assess("Yes", context).findings[0].rule == "answer:yes->weakness_check"


def test_questions_come_from_the_file(detector: Detector) -> None:
    """Questions are defined in the TOML file; an unknown id is a KeyError."""
    question = detector.question("safety_screen")
    assert isinstance(question, Question) and question.options["5"] == ("sensory", "balance")
    with pytest.raises(KeyError, match="nosuch"):
        detector.question("nosuch")


def test_custom_question_object(detector: Detector) -> None:
    """A Question built in code works as well as one from the file."""
    question = Question(id="q", criteria_on_yes=("drooling",), options={"1": ("vision",)})
    assert detector.assess("yes", ReplyContext(last_question=question)).criteria == ("drooling",)
    assert detector.assess("1", ReplyContext(last_question=question)).criteria == ("vision",)


# --- the criteria file --------------------------------------------------------------------------------


def test_criteria_are_complete(detector: Detector) -> None:
    """Every criterion has a tier, both labels and a source; the list covers the clinic's red flags."""
    for crit in detector.criteria.values():
        assert crit.tier in ("emergency", "urgent", "routine")
        assert crit.clinician_label and crit.patient_label and crit.source
    tiers = {cid: c.tier for cid, c in detector.criteria.items()}
    assert {cid for cid, t in tiers.items() if t == "emergency"} >= {
        "breathing",
        "choking",
        "sudden_weakness",
        "sudden_numbness",
        "stroke_signs",
        "collapse",
        "chest_pain",
        "self_harm",
    }
    assert {
        "weakness",
        "wasting",
        "daily_activities",
        "spreading",
        "persisting",
        "eyelid_face",
        "sensory",
        "balance",
        "cramps_severe",
        "sleep_disrupted",
        "drooling",
        "vision",
    } <= set(tiers)


def test_patient_labels_name_no_diagnosis(detector: Detector) -> None:
    """Patient-facing labels never name a diagnosis."""
    for crit in detector.criteria.values():
        assert not re.search(r"\b(als|ms|mnd|stroke|sclerosis|motor neuron)\b", crit.patient_label, re.I)


def test_every_compiled_pattern_is_valid_for_spacy() -> None:
    """The compiler's token patterns pass spaCy's own schema check (skipped at start-up for speed)."""
    book = load_rulebook(CRITERIA)
    for where, patterns in book.compiled.items():
        for pattern in patterns:
            assert not validate_token_pattern(pattern), where


_BROKEN = [
    ('tier = "emergency"', 'tier = "soon"', "criteria.breathing.tier: must be one of"),
    ('patterns = [\n  "chok*",', 'patterns = [\n  "chok*)",', "criteria.choking.patterns[1]"),
    ('patterns = [\n  "chok*",', 'patterns = [\n  "chok* @nosuch",', "unknown word set '@nosuch'"),
    ('patterns = [\n  "chok*",', 'patterns = [\n  "(chok*)?",', "write [words]"),
    ('patient_label = "trouble breathing"', 'patient_label = "signs of ALS"', "must not name a diagnosis"),
    ('patient_label = "trouble breathing"', 'patient_labl = "x"', "patient_label: is missing"),
    ('refines = ["breathing"]', 'refines = ["breathin"]', "no criterion called 'breathin'"),
    ('reason = "negated"', 'reason = "denied"', "modifiers.negated.reason: must be one of"),
    ('criteria_on_yes = ["weakness"]', 'criteria_on_yes = ["weaknes"]', "no criterion called 'weaknes'"),
    ("gap_words = 4", 'gap_words = "four"', "settings.gap_words: must be"),
    ("schema = 1", "schema = 1\ncolour = 2", "colour: unknown key"),
]


@pytest.mark.parametrize(("old", "new", "message"), _BROKEN, ids=[b[2] for b in _BROKEN])
def test_broken_file_is_refused_with_its_location(tmp_path: Path, old: str, new: str, message: str) -> None:
    """A mistake in the criteria file is refused with the table, key and problem named."""
    text = CRITERIA.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "red_flags.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(CriteriaError, match=re.escape(message)):
        load_rulebook(path)


@pytest.mark.parametrize(("content", "message"), [(None, "cannot read"), ("schema = [", "not valid TOML")])
def test_missing_or_unparsable_file(tmp_path: Path, content: str | None, message: str) -> None:
    """A missing or unparsable file is a CriteriaError, not a crash."""
    path = tmp_path / "red_flags.toml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(CriteriaError, match=message):
        load_rulebook(path)


# --- robustness, privacy, speed -----------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=400))
@example(text="")
@example(text="😀😀😀👍🏽")
@example(text="\n\n\r\t \u200b\ufeff")
@example(text="İ̇weak’s…?!:;" * 3)
@example(text="x" * 10_000)
@example(text="weak \ud800 hand \udfff")
@example(text="my hand is weak and " * 500)
def test_any_text_gives_a_verdict(detector: Detector, text: str) -> None:
    """Any unicode text, empty or 10,000 characters, gives a Verdict and never raises."""
    for context in (None, ReplyContext(weeks_since_onset=6, last_question=detector.question("safety_screen"))):
        verdict = detector.assess(text, context)
        assert isinstance(verdict, Verdict)
        for f in verdict.findings:
            assert text[f.start : f.end] == f.text


def test_no_patient_text_reaches_logs(detector: Detector, caplog: pytest.LogCaptureFixture) -> None:
    """Assessing a reply logs nothing through logging or loguru (PyRuSH's channel)."""
    from loguru import logger

    seen: list[str] = []
    sink = logger.add(lambda message: seen.append(str(message)), level="TRACE")
    try:
        with caplog.at_level(logging.DEBUG):
            detector.assess("Zebediah here: my left hand is weak and I choke")
    finally:
        logger.remove(sink)
    assert "Zebediah" not in caplog.text and not any("Zebediah" in m for m in seen)


def test_assess_is_thread_safe(detector: Detector) -> None:
    """Concurrent assessments give the same verdicts as sequential ones."""
    texts = [c["text"] for c in CASES[:60]]
    expected = [detector.assess(t) for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(detector.assess, texts * 3))
    assert got == expected * 3


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("weakness", "weekness", 1),
        ("numbess", "numbness", 1),
        ("swallow", "swallwo", 1),
        ("cooking", "choking", 1),
        ("tingling", "tinglng", 1),
        ("breathe", "breth", 2),
    ],
)
def test_edit_distance(a: str, b: str, distance: int) -> None:
    """The bounded edit distance counts insertions, deletions, substitutions and swaps."""
    assert edit_distance(a, b, 3) == distance


# --- followup check --jsonl -------------------------------------------------------------------------


def test_check_jsonl_keeps_one_line_per_input(detector: Detector) -> None:
    """Each input line gives one output line in order; a bad line gives an error, never "none"."""
    lines = [
        json.dumps({"text": "I can't breathe", "channel": "sms"}),
        "{not json",
        json.dumps({"text": 5}),
        "",
        json.dumps(
            {"text": "Doing great.\n\nOn Mon, Nov 30, 2026, Clinic wrote:\n> Any weakness?", "channel": "email"}
        ),
        json.dumps({"text": "x", "channel": "fax"}),
        json.dumps({"text": "still twitching", "weeks_since_onset": 6}),
        json.dumps({"text": "YES", "last_question": "weakness_check"}),
        json.dumps({"text": "YES", "last_question": "nosuch"}),
    ]
    out = io.StringIO()
    assert run_check(lines, out, detector) == 1
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["level"] for r in records] == ["emergency", None, None, "none", None, "red_flag", "red_flag", None]
    assert all("error" in records[i] for i in (1, 2, 4, 7))
    assert records[0]["criteria"] == ["breathing"] and records[0]["evidence"] == ["can't breathe"]


def test_check_errors_never_quote_the_text(detector: Detector) -> None:
    """Error messages for bad lines do not repeat the patient's words."""
    out = io.StringIO()
    run_check(['{"text": "Zebediah is choking", "channel": "pigeon"}'], out, detector)
    assert "Zebediah" not in out.getvalue()


def test_check_all_good_lines_exit_zero(detector: Detector) -> None:
    """A stream without bad lines returns 0."""
    assert run_check([json.dumps({"text": "fine"})], io.StringIO(), detector) == 0


def test_format_verdict_is_readable(detector: Detector) -> None:
    """The human verdict starts with the level and lists each reason."""
    text = format_verdict(detector.assess("no numbness but I fainted"))
    assert text.startswith("EMERGENCY (emergency): collapse")
    assert '"fainted"' in text and '"numbness"' in text
    assert format_verdict(detector.assess("all good")).startswith("no red flag")


@pytest.mark.parametrize(
    ("text", "criteria", "rule"),
    [
        ("desde hace semanas me falta el aire", ("breathless_exertion",), "breathing#56+gradual"),
        ("a las dos cuadras ya me ahogo", ("breathless_exertion",), "breathing#62+gradual"),
        ("I've been getting short of breath lying flat, little by little", ("breathing",), "breathing#"),
        ("se me atora la comida desde hace meses, cada vez más", ("swallowing",), "choking#11+gradual"),
        ("hoy se atoró con la comida y se puso morado, le pasa cada vez más", ("choking",), "choking#"),
    ],
)
def test_an_emergency_criterion_told_slowly_becomes_its_lesser_one(
    detector: Detector, text: str, criteria: tuple[str, ...], rule: str
) -> None:
    """`gradual_to`: a slow or on-effort course turns breathing, choking, sudden weakness into their lesser
    criterion, unless the reply is at rest or lying flat ([context] acute)."""
    verdict = detector.assess(text)
    assert verdict.criteria[: len(criteria)] == criteria, verdict.explanation()
    assert any(rule in f.rule for f in verdict.findings), verdict.explanation()


@pytest.mark.parametrize(
    "text",
    [
        "dont need these anymore",
        "please take me off these texts",
        "i won't need any more check ins, thanks for everything",
        "I nearly died laughing at the school play",
        "Ya no quiero recibir esto",
        "no quiero más mensajes",
        "me quiero morir de la vergüenza",
        "mi mamá me va a matar si llego tarde",
        "no quiero alarmar pero todo sigue igual",
    ],
)
def test_admin_wording_and_idioms_are_not_self_harm(detector: Detector, text: str) -> None:
    """Opt-out and admin requests, and "dying of" idioms, are not read as self-harm (nor anything else).

    Kept here rather than in tests/redflag_cases*.toml: those are training inputs too, and these negatives, trained
    on, cost the learned layer an escalation per language on the corpus' held-out split (the rules' [context]
    exclusions keep such wording from the learned layer at run time instead)."""
    assert detector.assess(text).level == "none", detector.assess(text).explanation()
