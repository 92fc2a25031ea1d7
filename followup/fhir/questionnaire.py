"""The intake as a FHIR Questionnaire, and a QuestionnaireResponse read back as triage answers.

Nothing here lists the questions: the items are the fields of the triage contract (`core.triage.Answers`: type,
bounds, whether required), their words come from `templates/<lang>/pages.toml` (English, with the other
languages as translations), and the answers that escalate on their own come from `clinic/intake.toml` (each such
item carries its red-flag criterion as a code). A clinic that changes those files changes the Questionnaire.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import annotated_types
from fhir.resources.R4B.questionnaire import Questionnaire

from followup.core.intake_rules import IntakeRules
from followup.core.triage import Answers
from followup.fhir.outcome import Issue, checked

QUESTIONNAIRE_ID = "intake"
CONSENT = "consent"  # the item that records the patient's agreement (not an answer of the triage itself)
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"


@dataclass(frozen=True)
class Item:
    link_id: str
    type: str  # boolean | integer | decimal | choice
    required: bool
    repeats: bool = False
    low: float | None = None
    high: float | None = None
    options: tuple[str, ...] = ()


def items() -> list[Item]:
    """The Questionnaire's items, one per triage answer in the contract's order, then the consent."""
    out = []
    for name, field in Answers.model_fields.items():
        ann = field.annotation
        low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
        high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
        if typing.get_origin(ann) is list:
            (literal,) = typing.get_args(ann)
            out.append(Item(name, "choice", False, True, options=tuple(typing.get_args(literal))))
        elif ann is bool:
            out.append(Item(name, "boolean", field.is_required()))
        else:
            kind = "integer" if ann is int else "decimal"
            out.append(Item(name, kind, field.is_required(), low=_num(low), high=_num(high)))
    out.append(Item(CONSENT, "boolean", True))
    return out


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _words(pages: Mapping[str, Any], name: str) -> str | None:
    intake = pages.get("intake", {})
    for section in ("questions", "numbers"):
        if name in intake.get(section, {}):
            return str(intake[section][name])
    special = {"locations": "locations", "intense_exercise": "exercise", CONSENT: "consent_text"}
    return str(intake[special[name]]) if name in special and special[name] in intake else None


def _text(pages: Mapping[str, Mapping[str, Any]], path: str, get: Any) -> tuple[str, dict[str, Any] | None]:
    """English words, with every other language as a translation extension on `_text`."""
    english = get(pages["en"], path) or path
    translations = [
        {"extension": [{"url": "lang", "valueCode": lang}, {"url": "content", "valueString": words}]}
        for lang, data in sorted(pages.items())
        if lang != "en" and (words := get(data, path))
    ]
    ext = {"extension": [{"url": TRANSLATION, **t} for t in translations]} if translations else None
    return english, ext


def questionnaire(
    base_url: str, pages: Mapping[str, Mapping[str, Any]], rules: IntakeRules, version: str
) -> dict[str, Any]:
    """The intake Questionnaire. `pages` maps a language to its pages.toml; `rules` is clinic/intake.toml."""
    criteria = {f.answer: (f.criterion, f.evidence) for f in rules.flags}
    criteria.setdefault(
        "onset_weeks", (rules.persisting_criterion, f"twitching for {rules.persisting_weeks:g} weeks or more")
    )
    out_items = []
    for it in items():
        text, text_ext = _text(pages, it.link_id, _words)
        item: dict[str, Any] = {"linkId": it.link_id, "text": text, "type": it.type, "required": it.required}
        if text_ext:
            item["_text"] = text_ext
        if it.repeats:
            item["repeats"] = True
        if it.link_id in criteria:
            criterion, evidence = criteria[it.link_id]
            item["code"] = [{"system": red_flag_system(base_url), "code": criterion, "display": evidence}]
        ext = []
        for url, bound in ((MIN_VALUE, it.low), (MAX_VALUE, it.high)):
            if bound is not None:
                key = "valueInteger" if it.type == "integer" else "valueDecimal"
                ext.append({"url": url, key: int(bound) if it.type == "integer" else bound})
        if ext:
            item["extension"] = ext
        if it.options:
            item["answerOption"] = [
                {
                    "valueCoding": {
                        "system": location_system(base_url),
                        "code": o,
                        "display": pages["en"].get("intake", {}).get("places", {}).get(o, o),
                    }
                }
                for o in it.options
            ]
        out_items.append(item)
    title, title_ext = _text(pages, "title", lambda p, _: p.get("intake", {}).get("title"))
    data: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": QUESTIONNAIRE_ID,
        "url": canonical(base_url),
        "version": version,
        "name": "FollowupIntake",
        "title": title,
        "status": "active",
        "subjectType": ["Patient"],
        "item": out_items,
    }
    if title_ext:
        data["_title"] = title_ext
    return checked(Questionnaire, data)


def canonical(base_url: str) -> str:
    return f"{base_url}/fhir/Questionnaire/{QUESTIONNAIRE_ID}"


def red_flag_system(base_url: str) -> str:
    return f"{base_url}/fhir/CodeSystem/red-flag"


def location_system(base_url: str) -> str:
    return f"{base_url}/fhir/CodeSystem/twitching-location"


# ---- a QuestionnaireResponse read back -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReadAnswers:
    answers: dict[str, Any]  # the triage answers, as `Answers` takes them
    consent: bool
    consent_text: str | None
    paths: dict[str, str]  # "answers.<linkId>" (and "consent") -> the element each was read from


VALUE_KEYS = {"boolean": ("valueBoolean",), "integer": ("valueInteger",), "decimal": ("valueDecimal", "valueInteger")}


def read_answers(raw: Mapping[str, Any], at: str) -> tuple[ReadAnswers, list[Issue]]:
    """The answers in a QuestionnaireResponse (as FHIR JSON, which its model has validated) found at `at` (its
    FHIRPath in the request). Returns them
    with every problem found, each naming its element: an unknown or repeated question, a wrong kind of answer, a
    required question left out."""
    known = {it.link_id: it for it in items()}
    answers: dict[str, Any] = {}
    paths: dict[str, str] = {}
    issues: list[Issue] = []
    consent, consent_text = False, None
    for i, item in enumerate(raw.get("item", [])):
        where = f"{at}.item[{i}]"
        link_id = item.get("linkId", "")
        it = known.get(link_id)
        if it is None:
            issues.append(Issue(f"{where}.linkId", f"{link_id!r} is not a question of Questionnaire/intake"))
            continue
        if link_id in paths or (link_id == CONSENT and CONSENT in paths):
            issues.append(Issue(f"{where}.linkId", f"{link_id!r} is answered twice"))
            continue
        given = item.get("answer", [])
        paths[CONSENT if link_id == CONSENT else f"answers.{link_id}"] = f"{where}.answer[0]"
        if not it.repeats and len(given) > 1:
            issues.append(Issue(f"{where}.answer", f"{link_id!r} takes one answer, not {len(given)}"))
            continue
        values = []
        for j, ans in enumerate(given):
            value, problem = _value(it, ans)
            if problem:
                issues.append(Issue(f"{where}.answer[{j}]", f"{link_id!r}: {problem}", "value"))
            values.append(value)
        if link_id == CONSENT:
            consent, consent_text = bool(values and values[0] is True), item.get("text")
        elif it.repeats:
            answers[link_id] = values
        elif values:
            answers[link_id] = values[0]
    for it in items():
        key = CONSENT if it.link_id == CONSENT else f"answers.{it.link_id}"
        if it.required and key not in paths:
            issues.append(Issue(f"{at}.item", f"the required question {it.link_id!r} is not answered", "required"))
    return ReadAnswers(answers, consent, consent_text, paths), issues


def _value(it: Item, ans: Mapping[str, Any]) -> tuple[Any, str | None]:
    if it.type == "choice":
        coding = ans.get("valueCoding")
        if coding is None and "valueString" in ans:
            return ans["valueString"], None
        if not coding or "code" not in coding:
            return None, "answer with valueCoding (a code of Questionnaire/intake's answerOption)"
        return coding["code"], None
    for key in VALUE_KEYS[it.type]:
        if key in ans:
            return ans[key], None
    return None, f"answer with {' or '.join(VALUE_KEYS[it.type])}"
