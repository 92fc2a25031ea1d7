"""A clinic's transaction Bundle (a Patient and their QuestionnaireResponse to Questionnaire/intake) read as the
triage the API takes, with the Patient identifier that makes the transaction idempotent.

Everything is checked before anything is written: the Bundle against the FHIR models, then its shape, then the
triage rules of `core.triage`. A problem is a `FhirError` whose issues name the element at fault.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from pydantic import ValidationError

from followup.core.storable import storable
from followup.core.triage import InputError, TriageIn, check_contact
from followup.fhir.outcome import FhirError, Issue, checked, from_validation, operation_outcome, refuse
from followup.fhir.questionnaire import QUESTIONNAIRE_ID, read_answers

TIMEZONE = "http://hl7.org/fhir/StructureDefinition/timezone"  # IANA zone of the patient (valueCode)
LANGUAGES = ("en", "es")


@dataclass(frozen=True)
class Submission:
    triage: TriageIn
    system: str  # the Patient identifier the transaction is idempotent on
    value: str
    digest: str  # SHA-256 of the normalised triage: the same digest again is a replay
    paths: dict[str, str]  # a TriageIn field ("phone", "answers.sleep_hours") -> the element it was read from
    order: tuple[str, str]  # the resource types in the order of the Bundle's entries (the response keeps it)

    def where(self, field: str) -> str:
        """The element a TriageIn field (as `InputError.field` names it) was read from."""
        return self.paths.get(field) or self.paths.get(field.split(".")[0]) or "Bundle"


def read_transaction(body: Any, clinic_timezone: str, region: str, texting: Sequence[str] = ()) -> Submission:
    """The submission in a transaction Bundle, checked whole; `region` reads national phone numbers, `texting`
    are the regions patients may be texted in (empty: any), as for the API's triage."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise refuse("structure", "Bundle", "POST a Bundle of type transaction to /fhir")
    entries = body.get("entry")
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        res = entry.get("resource") if isinstance(entry, dict) else None
        kind = res.get("resourceType") if isinstance(res, dict) else None
        if kind not in ("Patient", "QuestionnaireResponse"):
            raise refuse(
                "rule", f"Bundle.entry[{i}].resource", f"holds a Patient and a QuestionnaireResponse only, not {kind!r}"
            )
    try:
        bundle = Bundle.model_validate(body)
    except ValidationError as exc:
        raise FhirError("structure", from_validation(exc, "Bundle")) from None
    except (KeyError, TypeError, ValueError) as exc:  # fhir_core's own look-ups, outside pydantic's errors
        raise refuse("structure", "Bundle", f"is not a valid FHIR Bundle ({type(exc).__name__})") from None
    if bundle.type != "transaction":
        raise refuse("structure", "Bundle.type", f"must be 'transaction', not {bundle.type!r}")
    found: dict[str, tuple[int, Any]] = {}
    for i, entry in enumerate(bundle.entry or []):
        res = entry.resource
        kind = str(res.get_resource_type()) if res is not None else ""
        if kind in found:
            raise refuse("rule", f"Bundle.entry[{i}].resource", f"a second {kind}: one patient per transaction")
        if entry.request is None or entry.request.method not in ("POST", "PUT"):
            raise refuse("structure", f"Bundle.entry[{i}].request", "a transaction entry needs request POST")
        found[kind] = (i, entry)
    for kind in ("Patient", "QuestionnaireResponse"):
        if kind not in found:
            raise refuse(
                "rule",
                "Bundle.entry",
                f"no {kind}: the transaction holds a Patient and a QuestionnaireResponse",
                "required",
            )
    pi, pentry = found["Patient"]
    qi, qentry = found["QuestionnaireResponse"]
    patient: Patient = pentry.resource
    qr: QuestionnaireResponse = qentry.resource
    p_at, q_at = f"Bundle.entry[{pi}].resource", f"Bundle.entry[{qi}].resource"
    issues: list[Issue] = []
    _check_response(qr, q_at, pentry.fullUrl, issues)
    system, value, identifier_at = _identifier(patient, p_at, issues)
    # The answers and the contact are read from the JSON as sent, which the models have just validated.
    contact, paths = _contact(body["entry"][pi]["resource"], p_at, clinic_timezone, issues)
    paths["identifier"] = identifier_at
    read, answer_issues = read_answers(body["entry"][qi]["resource"], q_at)
    issues += answer_issues
    if issues:
        raise FhirError("rule", issues)
    paths.update(read.paths)
    data = {**contact, "consent": read.consent, "consent_text": read.consent_text, "answers": read.answers}
    try:
        triage = TriageIn.model_validate(data)
    except ValidationError as exc:
        raise FhirError("rule", from_validation(exc, "Bundle", paths)) from None
    try:
        normalised = check_contact(triage, region, texting)
    except InputError as exc:
        where = paths.get(exc.field) or paths.get(exc.field.split(".")[0]) or "Bundle"
        raise refuse("rule", where, f"{exc.field}: {exc.message}", "value") from None
    # The digest is of what the triage will store: "+1 310 555 0142" and "+13105550142" are one submission.
    normal = triage.model_copy(update={"phone": normalised.phone, "email": normalised.email})
    canonical = json.dumps(normal.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    order = ("Patient", "QuestionnaireResponse") if pi < qi else ("QuestionnaireResponse", "Patient")
    return Submission(triage, system, value, digest, paths, order)


def transaction_response(
    base_url: str, sub: Submission, made: dict[str, dict[str, Any]], created: bool, outcome: str
) -> dict[str, Any]:
    """The transaction-response Bundle: one entry per request entry, in its order, each with the resource as it
    now stands. `created` is False for a replay (200 OK: nothing was written); `outcome` says what the triage did."""
    entries = []
    for kind in sub.order:
        res = made[kind]
        response: dict[str, Any] = {
            "status": "201 Created" if created else "200 OK",
            "location": f"{kind}/{res['id']}",
            "lastModified": res["meta"]["lastUpdated"],
        }
        if kind == "QuestionnaireResponse":
            response["outcome"] = operation_outcome(
                [Issue("QuestionnaireResponse", outcome, "informational")], "information"
            )
        entries.append({"fullUrl": f"{base_url}/fhir/{kind}/{res['id']}", "response": response})
    # The envelope is validated here; the two resources were, when they were made.
    data = checked(Bundle, {"resourceType": "Bundle", "type": "transaction-response", "entry": entries})
    for entry, kind in zip(data["entry"], sub.order, strict=True):
        entry["resource"] = made[kind]
    return data


def _check_response(qr: QuestionnaireResponse, at: str, patient_url: str | None, issues: list[Issue]) -> None:
    if not str(qr.questionnaire or "").rstrip("/").endswith(f"Questionnaire/{QUESTIONNAIRE_ID}"):
        issues.append(
            Issue(f"{at}.questionnaire", f"must be Questionnaire/{QUESTIONNAIRE_ID} (GET /fhir/Questionnaire)")
        )
    if qr.status != "completed":
        issues.append(Issue(f"{at}.status", f"must be 'completed', not {qr.status!r}", "value"))
    subject = qr.subject.reference if qr.subject is not None else None
    if subject is not None and patient_url is not None and subject != patient_url:
        issues.append(Issue(f"{at}.subject", f"must refer to the transaction's Patient ({patient_url})", "value"))


def _identifier(patient: Patient, at: str, issues: list[Issue]) -> tuple[str, str, str]:
    for i, ident in enumerate(patient.identifier or []):
        if ident.system and ident.value:
            system, value = str(ident.system), str(ident.value)
            if storable(system) != system or storable(value) != value or len(system) + len(value) > 1000:
                issues.append(Issue(f"{at}.identifier[{i}]", "holds characters no record number has", "value"))
            return system, value, f"{at}.identifier[{i}]"
    issues.append(
        Issue(
            f"{at}.identifier",
            "needs an identifier with system and value (the clinic's record "
            "number): it makes the transaction safe to repeat",
            "required",
        )
    )
    return "", "", f"{at}.identifier"


def _contact(
    raw: dict[str, Any], at: str, clinic_tz: str, issues: list[Issue]
) -> tuple[dict[str, Any], dict[str, str]]:
    paths: dict[str, str] = {"name": f"{at}.name", "timezone": f"{at}.extension", "language": f"{at}.communication"}
    name = None
    for i, n in enumerate(raw.get("name", [])):
        name = n.get("text") or " ".join([*n.get("given", []), n.get("family", "")]).strip() or None
        if name:
            paths["name"] = f"{at}.name[{i}]"
            break
    if name is None:
        issues.append(Issue(f"{at}.name", "needs a name (text, or given and family)", "required"))
    phone = email = None
    ranked: list[tuple[int, int, str]] = []
    for i, t in enumerate(raw.get("telecom", [])):
        system, value = t.get("system"), t.get("value")
        if system == "phone" and value and (phone is None or t.get("use") == "mobile"):
            phone, paths["phone"] = value, f"{at}.telecom[{i}]"
            ranked.append((t.get("rank", 1000), i, "sms"))
        elif system == "email" and value and email is None:
            email, paths["email"] = value, f"{at}.telecom[{i}]"
            ranked.append((t.get("rank", 1000), i, "email"))
    paths["channel"] = f"{at}.telecom"
    channel = min(ranked)[2] if ranked else "sms"  # the preferred (lowest rank) contact; a phone first on a tie
    timezone = clinic_tz
    for i, ext in enumerate(raw.get("extension", [])):
        if ext.get("url") == TIMEZONE:
            timezone, paths["timezone"] = ext.get("valueCode", ""), f"{at}.extension[{i}].valueCode"
    language = "en"
    comms = raw.get("communication", [])
    pick = next((i for i, c in enumerate(comms) if c.get("preferred")), 0 if comms else None)
    if pick is not None:
        codes = [c.get("code", "") for c in comms[pick]["language"].get("coding", [])]
        lang = next((c.split("-")[0].lower() for c in codes if c), "")
        paths["language"] = f"{at}.communication[{pick}].language"
        if lang not in LANGUAGES:
            issues.append(Issue(paths["language"], f"messages are written in {' and '.join(LANGUAGES)} only", "value"))
        else:
            language = lang
    contact = {
        "name": name or "",
        "phone": phone,
        "email": email,
        "channel": channel,
        "timezone": timezone,
        "language": language,
    }
    return contact, paths
