"""The learned red-flag layer: its pinned artefact, how it combines with the rules, training, and its output."""

from __future__ import annotations

import io
import json
import shutil
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from followup.cli.check import run_check
from followup.core.vocab import Tier
from followup.redflags import ArtefactError, Detector, Screen
from followup.redflags.combine import combine
from followup.redflags.learned import train as learn
from followup.redflags.learned.artefact import loads, sha256_of
from followup.redflags.learned.clauses import clauses
from followup.redflags.learned.config import LearnedSettings, parse_learned
from followup.redflags.learned.features import UseEncoder
from followup.redflags.learned.language import LanguageRead
from followup.redflags.learned.model import LearnedModel, Neighbour, Prediction
from followup.redflags.rulebook import CriteriaError
from followup.redflags.verdict import Finding, Suppressed, Verdict

ROOT = Path(__file__).resolve().parent.parent
CRITERIA = ROOT / "clinic" / "red_flags.toml"
TIERS = {"breathing": Tier.EMERGENCY, "weakness": Tier.URGENT, "sensory": Tier.ROUTINE}
SETTINGS = LearnedSettings(artefact=Path("unused"), sha256="0" * 64)


@pytest.fixture(scope="module")
def screen() -> Screen:
    return Screen.from_file(CRITERIA)


def _learned_table() -> dict:
    return tomllib.loads(CRITERIA.read_text(encoding="utf-8"))["learned"]


# --- the artefact ------------------------------------------------------------------------------------------


def test_committed_artefact_matches_the_pinned_sha256() -> None:
    """The committed model's sha256 is the one pinned in clinic/red_flags.toml (else the service will not start)."""
    settings = parse_learned(_learned_table(), CRITERIA)
    assert settings is not None
    assert sha256_of(settings.artefact) == settings.sha256


def test_committed_artefact_was_trained_on_the_current_corpus() -> None:
    """The model was trained on the corpus and cases as they are now: edit them and this fails until retrained."""
    settings = parse_learned(_learned_table(), CRITERIA)
    assert settings is not None
    header, _ = loads(settings.artefact.read_bytes())
    files = learn.corpus_files(
        ROOT / "clinic/corpus", [ROOT / p for p in ("tests/redflag_cases.toml", "tests/redflag_cases_es.toml")]
    )
    assert header["corpus_sha256"] == learn.corpus_sha256(files), "run `followup redflags train`"


@pytest.mark.parametrize(
    "markers",
    [["the", "and"], {"en": "the and"}, {"fr": ["le", "et"]}, {"en": ["the", 2]}],
)
def test_language_markers_are_checked(markers: object) -> None:
    """[learned] language_markers must map a language read to a list of words, or the criteria file is refused."""
    table = _learned_table() | {"language_markers": markers}
    with pytest.raises(CriteriaError, match="language_markers"):
        parse_learned(table, CRITERIA)


@pytest.mark.parametrize("damage", ["other pinned hash", "altered artefact"])
def test_a_model_that_is_not_the_pinned_one_refuses_to_load(tmp_path: Path, damage: str) -> None:
    """A changed artefact, or a changed pin, stops the detector from loading, naming the sha256."""
    shutil.copy(CRITERIA, tmp_path / "red_flags.toml")
    shutil.copy(CRITERIA.parent / "red_flags.model", tmp_path / "red_flags.model")
    if damage == "other pinned hash":
        text = (tmp_path / "red_flags.toml").read_text(encoding="utf-8")
        pinned = _learned_table()["sha256"]
        (tmp_path / "red_flags.toml").write_text(text.replace(pinned, "f" * 64), encoding="utf-8")
    else:
        with (tmp_path / "red_flags.model").open("ab") as f:
            f.write(b"\0")
    with pytest.raises(ArtefactError, match="sha256"):
        Screen.from_file(tmp_path / "red_flags.toml")


# --- combining the layers ----------------------------------------------------------------------------------


def _rules(kind: str) -> Verdict:
    if kind == "hit":
        return Verdict.of([Finding("weakness", Tier.URGENT, "weaker", 8, 14, "criteria.weakness.patterns[1]")], [])
    if kind == "negated":
        return Verdict.of([], [Suppressed("breathing", "trouble breathing", 3, 20, "negated")])
    return Verdict.of([], [])


def _prediction(p: float, p_em: float = 0.0, criterion: str = "weakness") -> Prediction:
    ranked = sorted(
        [("breathing", p_em), ("weakness", p - p_em if criterion == "weakness" else 0.0), ("sensory", 0.0)],
        key=lambda x: -x[1],
    )
    return Prediction(p, p_em, criterion, p, None, ranked=tuple(ranked))


READ = LanguageRead("en", 0.99, True)
UNREAD = LanguageRead("fr", 0.97, False)


@pytest.mark.parametrize(
    ("rules", "p", "p_em", "language", "level", "tier", "layer", "review"),
    [
        ("hit", 0.05, 0.0, READ, "red_flag", "urgent", "rules", False),  # rule hit, low p: the rules stand
        ("hit", 0.9, 0.0, READ, "red_flag", "urgent", "both", False),  # both agree
        ("hit", 0.9, 0.9, READ, "emergency", "emergency", "both", False),  # sure of an emergency: it is raised
        ("hit", 0.9, 0.45, READ, "red_flag", "urgent", "both", False),  # a possible emergency: the rules' level stands
        ("hit", 0.45, 0.45, READ, "red_flag", "urgent", "both", False),  # below flag_at: the rules' level stands
        ("none", 0.9, 0.0, READ, "red_flag", "urgent", "learned", False),  # no rule, high p: escalated
        ("none", 0.9, 0.6, READ, "emergency", "emergency", "learned", False),  # an emergency criterion
        ("none", 0.35, 0.31, READ, "emergency", "emergency", "learned", False),  # a possible emergency: no queue
        ("none", 0.35, 0.0, READ, "red_flag", "routine", "learned", True),  # review band
        ("none", 0.2, 0.0, READ, "red_flag", "routine", "learned", True),  # review band's lower edge
        ("none", 0.19, 0.0, READ, "none", None, None, False),  # below it
        ("none", 0.05, 0.0, UNREAD, "red_flag", "routine", "language", True),  # a language we do not read
        ("hit", 0.05, 0.0, UNREAD, "red_flag", "urgent", "rules", False),  # ... but a rule hit is a rule hit
        ("negated", 0.0, 0.0, READ, "none", None, None, False),  # what the gated prediction gives: none
    ],
)
def test_combination(
    rules: str,
    p: float,
    p_em: float,
    language: LanguageRead,
    level: str,
    tier: str | None,
    layer: str | None,
    review: bool,
) -> None:
    """Rules that fire stand unless the learned layer is sure of an emergency (then both criteria, at emergency);
    the learned layer adds an escalation, an emergency or a review; an unread language is reviewed."""
    verdict = combine(_rules(rules), _prediction(p, p_em), language, SETTINGS, TIERS)
    assert (verdict.level, verdict.tier, verdict.layer, verdict.review) == (level, tier, layer, review)
    assert verdict.learned is not None and verdict.learned.probability == p
    if review:
        assert verdict.criteria == () and verdict.review_reason in ("learned", "language")
    if rules == "hit":
        assert verdict.criteria == (("weakness", "breathing") if level == "emergency" else ("weakness",))


def _near(*labels: str) -> tuple[Neighbour, ...]:
    return tuple(Neighbour(f"example {i}", label, 0.6) for i, label in enumerate(labels))


CLEARING = LearnedSettings(
    artefact=Path("unused"), sha256="0" * 64, review_needs_flagged_neighbour=True, review_neighbours=5
)


@pytest.mark.parametrize(
    ("p", "p_em", "neighbours", "level", "review", "cleared"),
    [
        (0.35, 0.0, ("none",) * 5, "none", False, True),  # review band, five benign examples: cleared
        (0.35, 0.0, ("none",) * 4 + ("weakness",), "red_flag", True, False),  # one red flag among them: review
        (0.35, 0.0, ("none",) * 3, "red_flag", True, False),  # fewer examples than it takes: review
        (0.35, 0.31, ("none",) * 5, "emergency", False, False),  # a possible emergency is never cleared
        (0.9, 0.0, ("none",) * 5, "red_flag", False, False),  # a confident finding is not a review to clear
    ],
)
def test_review_needs_a_flagged_neighbour(
    p: float, p_em: float, neighbours: tuple[str, ...], level: str, review: bool, cleared: bool
) -> None:
    """With review_needs_flagged_neighbour, a review-band reply whose closest labelled examples all needed nothing
    is answered none, says why, and shows the clinician only `neighbours` (3) of them."""
    prediction = replace(_prediction(p, p_em), neighbours=_near(*neighbours))
    verdict = combine(_rules("none"), prediction, READ, CLEARING, TIERS)
    assert (verdict.level, verdict.review) == (level, review)
    assert verdict.learned is not None and verdict.learned.cleared_by_neighbours is cleared
    assert len(verdict.learned.neighbours) == min(3, len(neighbours))
    assert verdict.learned.to_dict()["cleared_by_neighbours"] is cleared
    if cleared:
        assert "Not sent to review" in verdict.explanation()


@pytest.mark.parametrize(
    ("p", "p_em", "level", "tier", "review"),
    [
        (0.6, 0.2, "emergency", "emergency", False),  # confident, nearest an emergency criterion: its tier
        (0.35, 0.2, "red_flag", "urgent", True),  # the same lean in the review band: an urgent review, no 911/988
        (0.35, 0.1, "red_flag", "routine", True),  # no lean: a routine review
        (0.35, 0.31, "emergency", "emergency", False),  # p(emergency) itself at emergency_at: an emergency
    ],
)
def test_nearest_emergency_tier_needs_a_confident_finding(
    p: float, p_em: float, level: str, tier: str, review: bool
) -> None:
    """A learned finding takes its nearest criterion's emergency tier only at or above flag_at; in the review band
    ("please stop texting me" once read as p 0.33, nearest self-harm) the lean makes an urgent staff review."""
    settings = LearnedSettings(artefact=Path("unused"), sha256="0" * 64, nearest_emergency_at=0.15)
    verdict = combine(_rules("none"), _prediction(p, p_em, criterion="breathing"), READ, settings, TIERS)
    assert (verdict.level, verdict.tier, verdict.review) == (level, tier, review)


@pytest.mark.parametrize(
    ("needs", "neighbours", "level", "tier", "cleared"),
    [
        (False, ("none",) * 5, "red_flag", "urgent", False),  # a lean is exempt from clearing by default
        (True, ("none",) * 5, "none", None, True),  # with the setting, five benign examples clear it too
        (True, ("none",) * 4 + ("self_harm",), "red_flag", "urgent", False),  # one flagged example: urgent review
    ],
)
def test_a_leaning_review_can_need_a_flagged_neighbour(
    needs: bool, neighbours: tuple[str, ...], level: str, tier: str | None, cleared: bool
) -> None:
    """With leaning_review_needs_neighbour, a review-band reply that leans to an emergency criterion is cleared
    like any other review when its closest labelled examples all needed nothing; kept, it stays an urgent review."""
    settings = replace(CLEARING, nearest_emergency_at=0.15, leaning_review_needs_neighbour=needs)
    prediction = replace(_prediction(0.35, 0.2, criterion="breathing"), neighbours=_near(*neighbours))
    verdict = combine(_rules("none"), prediction, READ, settings, TIERS)
    assert (verdict.level, verdict.tier) == (level, tier)
    assert verdict.learned is not None and verdict.learned.cleared_by_neighbours is cleared


@pytest.mark.parametrize(
    ("gradual", "criterion", "p", "p_em", "level", "tier", "review"),
    [
        (False, "breathing", 0.6, 0.5, "emergency", "emergency", False),  # no time course: the model's emergency
        (True, "breathing", 0.6, 0.5, "red_flag", "urgent", False),  # told slowly: flagged at the tier below
        (True, "breathing", 0.35, 0.31, "red_flag", "urgent", False),  # a possible emergency told slowly: flagged
        (True, "self_harm", 0.6, 0.5, "emergency", "emergency", False),  # self-harm is never capped
        (True, "breathing", 0.35, 0.0, "red_flag", "routine", True),  # the review band is unchanged
        (True, "breathing", 0.1, 0.0, "none", None, False),  # and so is "none"
    ],
)
def test_a_slow_time_course_keeps_a_learned_only_finding_below_emergency(
    gradual: bool, criterion: str, p: float, p_em: float, level: str, tier: str | None, review: bool
) -> None:
    """In a reply that tells a slow course ("desde hace semanas", "little by little") the learned layer alone
    makes a red flag, not an emergency: never below a red flag, and never for self-harm, overdose or seizure."""
    tiers = TIERS | {"self_harm": Tier.EMERGENCY}
    ranked = ((criterion, p_em), ("weakness", round(p - p_em, 4)), ("sensory", 0.0))
    prediction = Prediction(p, p_em, criterion, p_em, None, ranked=tuple(sorted(ranked, key=lambda x: -x[1])))
    rules = replace(_rules("none"), gradual=gradual)
    verdict = combine(rules, prediction, READ, SETTINGS, tiers)
    assert (verdict.level, verdict.tier, verdict.review) == (level, tier, review)


def test_a_slow_time_course_keeps_the_rules_red_flag_from_being_raised() -> None:
    """A rules' red flag in a reply told slowly is not raised to an emergency by the learned layer alone."""
    raised = combine(_rules("hit"), _prediction(0.9, 0.9), READ, SETTINGS, TIERS)
    kept = combine(replace(_rules("hit"), gradual=True), _prediction(0.9, 0.9), READ, SETTINGS, TIERS)
    assert (raised.level, kept.level) == ("emergency", "red_flag")


class _AlarmedModel:
    """A learned layer that finds every clause alarming; records the spans it was told to leave out."""

    def __init__(self) -> None:
        self.gated: list[list[tuple[int, int]]] = []

    def predict(self, text: str, gated: list[tuple[int, int]]) -> Prediction:
        self.gated.append(list(gated))
        kept = [c for c in clauses(text) if not any(c.start < e and s < c.end for s, e in gated)]
        if not kept:
            return Prediction.nothing(tuple(c for c in clauses(text) if c not in kept))
        return Prediction(0.95, 0.9, "breathing", 0.9, kept[0], ranked=(("breathing", 0.9), ("weakness", 0.05)))


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("no trouble breathing at all", "none"),  # negated by the rules: not read by the learned layer
        ("my sister has trouble breathing with her asthma", "none"),  # someone else, with her own condition
        ("what if I get trouble breathing?", "none"),  # hypothetical / question
        ("no trouble breathing. but my chest feels like concrete", "emergency"),  # the other clause is read
    ],
)
def test_the_learned_layer_does_not_override_what_the_rules_discounted(text: str, level: str) -> None:
    """A clause the rules found negated, about someone else or hypothetical is never read by the learned layer."""
    model = _AlarmedModel()
    rules = Detector.from_file(CRITERIA)
    settings = parse_learned(_learned_table(), CRITERIA)
    assert settings is not None
    languages = _Languages()
    verdict = Screen(rules, settings, model, languages).assess(text)  # type: ignore[arg-type]
    assert verdict.level == level, verdict.explanation()
    assert model.gated and model.gated[0], "the rules' suppressed spans reach the learned layer"


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("please take me off these texts", False),  # an opt-out request: the model does not read it
        ("se me cae la cara de vergüenza", False),  # a figure of speech the rules exclude
        ("the wifi is weak. my chest feels like concrete", True),  # the other clause is still read
    ],
)
def test_the_learned_layer_does_not_read_what_the_rules_excluded(text: str, read: bool) -> None:
    """A [context] exclusion (a figure of speech, an opt-out) is kept from the learned layer as from the rules."""
    model = _AlarmedModel()
    rules = Detector.from_file(CRITERIA)
    settings = parse_learned(_learned_table(), CRITERIA)
    assert settings is not None
    verdict = Screen(rules, settings, model, _Languages()).assess(text)  # type: ignore[arg-type]
    assert (verdict.level != "none") == read, verdict.explanation()
    assert rules.assess(text).excluded, "the rules report what they excluded"


class _Languages:
    def read(self, text: str) -> LanguageRead:
        return READ


# --- the real model and language check ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "readable"),
    [
        ("No puedo respirar bien desde anoche", True),
        ("the twitching in my calf is about the same, no weakness", True),
        ("ok", True),  # too short to tell: read
        ("Je ne peux plus respirer correctement depuis ce matin", False),
        ("Tôi không thở được từ tối hôm qua, rất khó chịu", False),
        # lingua's trigram mode reads this as German (0.98); its marker words say English
        ("can you send me a copy of the letter the neurologist wrote", True),
        # other languages' own function words are not markers
        ("minha mão está fraca e não consigo abrir potes, estou com medo", False),
        ("non riesco più a deglutire da questa mattina, ho paura", False),
        ("Hindi ako makalunok mula kaninang umaga, natatakot ako", False),
    ],
)
def test_language_read(screen: Screen, text: str, readable: bool) -> None:
    """A reply confidently in a language the clinic does not read is marked unreadable; short ones are read."""
    assert screen.languages is not None
    assert screen.languages.read(text).readable is readable


def test_reply_in_an_unread_language_goes_to_review(screen: Screen) -> None:
    """A French reply is never answered "none": it is a routine review item with its language."""
    verdict = screen.assess("Bonjour, je ne sais pas si c'est grave mais depuis hier soir j'ai du mal à respirer")
    assert (verdict.level, verdict.tier, verdict.review, verdict.language) == ("red_flag", "routine", True, "fr")


def test_learned_layer_explains_with_neighbours(screen: Screen) -> None:
    """A learned finding carries its probability, the driving clause and three labelled neighbours."""
    verdict = screen.assess(
        "my shoes keep catching on the carpet and my wife says she can hear me slapping my foot down"
    )
    assert verdict.level != "none" and verdict.layer == "learned", verdict.explanation()
    assert verdict.learned is not None and verdict.learned.probability >= 0.5
    assert len(verdict.learned.neighbours) == 3 and verdict.learned.clause


def test_check_jsonl_carries_the_learned_fields(screen: Screen) -> None:
    """`followup check --jsonl` adds layer, probability, review, language and neighbours to every line."""
    out = io.StringIO()
    lines = [json.dumps({"text": t}) for t in ("my right hand is getting weaker", "all good, thanks", "ok")]
    assert run_check(lines, out, screen) == 0
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    for r in records:
        assert {"layer", "probability", "review", "language", "neighbours"} <= set(r)
        assert isinstance(r["review"], bool) and isinstance(r["neighbours"], list)
    assert records[0]["level"] == "red_flag" and records[0]["layer"] in ("rules", "both")
    assert records[1]["level"] == "none" and records[1]["layer"] is None and records[1]["probability"] < 0.2


# --- training ----------------------------------------------------------------------------------------------

TINY = [
    ("I can't breathe when I lie down", "emergency", "breathing"),
    ("it's so hard to get air in, even sitting", "emergency", "breathing"),
    ("no puedo respirar bien", "emergency", "breathing"),
    ("me falta el aire al acostarme", "emergency", "breathing"),
    ("my hand is weaker, I drop my cup", "red_flag", "weakness"),
    ("my leg gives way on the stairs", "red_flag", "weakness"),
    ("tengo la mano débil", "red_flag", "weakness"),
    ("se me cae todo de la mano", "red_flag", "weakness"),
    ("all good, thanks for the tips", "none", "none"),
    ("the twitching is a bit better this week", "none", "none"),
    ("todo bien, gracias", "none", "none"),
    ("los brincos siguen igual", "none", "none"),
]


def _train_tiny(tmp_path: Path, encoder: UseEncoder) -> bytes:
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    (corpus / "tiny.jsonl").write_text(
        "".join(
            json.dumps({"text": t, "channel": "sms", "lang": "en", "level": lv, "criteria": [] if c == "none" else [c]})
            + "\n"
            for t, lv, c in TINY
        ),
        encoding="utf-8",
    )
    files = learn.corpus_files(corpus, [])
    examples = learn.load_examples(files)
    data = learn.embed(examples, TIERS, encoder)
    return learn.artefact_bytes(examples, data, learn.corpus_sha256(files), 0, TIERS)


def test_training_is_reproducible_and_the_result_loads(tmp_path: Path) -> None:
    """Training twice on the same corpus gives the same bytes; the model loads and tells the classes apart."""
    encoder = UseEncoder()
    first, second = _train_tiny(tmp_path, encoder), _train_tiny(tmp_path, encoder)
    assert first == second
    (tmp_path / "m.bin").write_bytes(first)
    settings = LearnedSettings(artefact=tmp_path / "m.bin", sha256=sha256_of(tmp_path / "m.bin"))
    model = LearnedModel.load(settings, TIERS, encoder)
    assert model.predict("I can't get any air in").criterion == "breathing"
    assert model.predict("all fine thanks").p_any < model.predict("I can't get any air in").p_any
    assert len(model.predict("hola").neighbours) == 3


BURIED = (
    "2 - twitches a lot calmer this week, thanks for the tips. Happy to keep my appointment on the 14th in the "
    "system. I don't think I'll be around by then, I've made my mind up."
)


@pytest.mark.parametrize(("alone", "emergency"), [(True, True), (False, False)])
def test_an_emergency_in_one_clause_is_not_averaged_away(screen: Screen, alone: bool, emergency: bool) -> None:
    """With clause_alone, a clause read alone as an emergency gives the reply its reading and is named as the driver;
    without it, the rest of a friendly reply averages the alarm away (what blind set V found)."""
    assert screen.model is not None
    tiers = {cid: c.tier for cid, c in screen.criteria.items()}
    model = LearnedModel.load(replace(screen.model.settings, clause_alone=alone), tiers)
    prediction = model.predict(BURIED)
    assert (prediction.p_emergency >= 0.5) is emergency, prediction
    if alone:
        assert prediction.clause is not None and "around" in prediction.clause.text
