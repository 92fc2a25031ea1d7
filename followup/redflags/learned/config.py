"""The [learned] table of clinic/red_flags.toml: where the model is, its pinned hash, thresholds, languages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from followup.redflags.rulebook import CriteriaError
from followup.redflags.verdict import REASONS, Reason

_SHA = re.compile(r"^[0-9a-f]{64}$")
_LANG = re.compile(r"^[a-z]{2}$")


@dataclass(frozen=True)
class LearnedSettings:
    """How the learned layer is loaded and how its probabilities become a verdict."""

    artefact: Path
    sha256: str
    flag_at: float = 0.5  # p(any red flag) at or above this escalates
    review_at: float = 0.2  # p(any red flag) at or above this (and below flag_at) goes to staff review
    emergency_at: float = 0.3  # p(emergency criteria) at or above this makes the escalation an emergency
    # ...and so does the most likely criterion being an emergency one, with p(emergency) at or above this: a learned
    # finding takes the tier of the criterion it is nearest to (1.0: off)
    nearest_emergency_at: float = 1.0
    raise_at: float = 0.5  # p(emergency) at or above this (and p >= flag_at) raises a rules' red flag to emergency
    gated_by: tuple[Reason, ...] = REASONS  # a clause the rules discounted for one of these is not read
    # A [context] exclusion (a figure of speech, an admin or opt-out request) is blanked out before the model reads
    # the reply: "se me cae la cara de vergüenza" and "please take me off these texts" are not read by it either
    gate_exclusions: bool = True
    # A finding of the learned layer alone in a reply that tells a slow time course ([context] gradual) is not made
    # an emergency: it stays a red flag (or a review) at the tier below (the rules still make emergencies)
    gradual_caps_emergency: bool = True
    # ...except these: a self-harm, overdose or seizure reading is never capped, however the reply tells time
    never_capped: tuple[str, ...] = ("self_harm", "overdose", "seizure")
    read_languages: tuple[str, ...] = ("en", "es")
    detect_languages: tuple[str, ...] = ("en", "es")
    language_min_letters: int = 20  # shorter replies are too short to tell a language: they are read
    language_min_confidence: float = 0.6
    # Words that mark a language read (function words no other language of detect_languages writes the same way):
    # a reply with at least two of one language's markers, a fifth of its words or more, is read whatever lingua
    # guesses (its trigram mode took "can you send me a copy of the letter" for German at 0.98).
    language_markers: tuple[tuple[str, frozenset[str]], ...] = ()
    neighbours: int = 3
    # A reply no rule flagged whose p(any) is only in the review band, and does not lean to an emergency, goes to
    # review only if at least one of its `neighbours` closest labelled examples is a red flag: when all of them
    # needed nothing, the corpus says replies like it are benign (a second opinion, by example, on an unsure model)
    review_needs_flagged_neighbour: bool = False
    review_neighbours: int = 5  # how many closest examples that takes (the clinician is shown `neighbours`)
    # ... and so does a review that leans to an emergency (its most likely criterion an emergency one): measured on
    # the validation split and the retired blind sets, its five closest examples all benign meant a false alarm
    # every time (16 on the retired sets, none of them a red flag); a lean that is not cleared stays urgent
    leaning_review_needs_neighbour: bool = False
    enabled: bool = True
    min_words: int = 3  # shorter replies ("STOP", "2", "yes") are the rules' and keywords' alone
    # Each clause of at least min_words words is also read as a reply on its own; when the one that reads most like
    # an emergency does so at clause_emergency_at or more, and more than the whole reply does, the reply takes that
    # clause's reading: a self-harm line at the end of a long friendly message is not averaged away by the rest
    # (for any red flag, not only emergencies, it cost 9 false alarms per finding on the corpus' validation split)
    clause_alone: bool = False
    clause_emergency_at: float = 0.5
    rules_only: tuple[str, ...] = ("persisting",)  # criteria that need context the model lacks (weeks since onset)


def parse_learned(data: Any, path: Path) -> LearnedSettings | None:
    """The checked [learned] table, or None when the file has none (rules only)."""
    if data is None:
        return None
    where = f"{path}: learned"
    if not isinstance(data, dict):
        raise CriteriaError(f"{where}: must be a table")
    known = set(LearnedSettings.__dataclass_fields__)
    for key in data:
        if key not in known:
            raise CriteriaError(f"{where}.{key}: unknown key (check the spelling)")
    for key in ("artefact", "sha256"):
        if not isinstance(data.get(key), str):
            raise CriteriaError(f"{where}.{key}: is missing or not a string")
    if not _SHA.match(data["sha256"]):
        raise CriteriaError(f"{where}.sha256: must be 64 lowercase hex digits")
    values: dict[str, Any] = {"artefact": (path.parent / data["artefact"]).resolve(), "sha256": data["sha256"]}
    for key in (
        "flag_at",
        "review_at",
        "emergency_at",
        "nearest_emergency_at",
        "raise_at",
        "language_min_confidence",
        "clause_emergency_at",
    ):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise CriteriaError(f"{where}.{key}: must be a number from 0 to 1; got {value!r}")
            values[key] = float(value)
    for key in ("language_min_letters", "neighbours", "min_words", "review_neighbours"):
        if key in data:
            if isinstance(data[key], bool) or not isinstance(data[key], int) or data[key] < 0:
                raise CriteriaError(f"{where}.{key}: must be a whole number >= 0; got {data[key]!r}")
            values[key] = data[key]
    for key in (
        "enabled",
        "gate_exclusions",
        "gradual_caps_emergency",
        "review_needs_flagged_neighbour",
        "leaning_review_needs_neighbour",
        "clause_alone",
    ):
        if key in data:
            if not isinstance(data[key], bool):
                raise CriteriaError(f"{where}.{key}: must be true or false")
            values[key] = data[key]
    for key in ("read_languages", "detect_languages"):
        if key in data:
            langs = data[key]
            if not isinstance(langs, list) or not all(isinstance(x, str) and _LANG.match(x) for x in langs):
                raise CriteriaError(f"{where}.{key}: must be a list of two-letter language codes")
            values[key] = tuple(langs)
    if "language_markers" in data:
        markers = data["language_markers"]
        ok = isinstance(markers, dict) and all(
            isinstance(v, list) and all(isinstance(w, str) for w in v) for v in markers.values()
        )
        if not ok:
            raise CriteriaError(f"{where}.language_markers: must map a language code to a list of words")
        if not set(markers) <= set(values.get("read_languages", LearnedSettings.read_languages)):
            raise CriteriaError(f"{where}.language_markers: only languages of read_languages take markers")
        values["language_markers"] = tuple((k, frozenset(w.lower() for w in v)) for k, v in sorted(markers.items()))
    for key in ("rules_only", "never_capped"):
        if key in data:
            ids = data[key]
            if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
                raise CriteriaError(f"{where}.{key}: must be a list of criterion ids")
            values[key] = tuple(ids)
    if "gated_by" in data:
        reasons = data["gated_by"]
        if not isinstance(reasons, list) or any(r not in REASONS for r in reasons):
            raise CriteriaError(f"{where}.gated_by: must list reasons among {', '.join(REASONS)}")
        values["gated_by"] = tuple(reasons)
    settings = LearnedSettings(**values)
    if not settings.review_at <= settings.flag_at:
        raise CriteriaError(f"{where}.review_at: must not be above flag_at")
    if not set(settings.read_languages) <= set(settings.detect_languages):
        raise CriteriaError(f"{where}.detect_languages: must include every language of read_languages")
    return settings
