"""The CapabilityStatement at /fhir/metadata: what this server reads, searches and accepts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from followup.fhir import FHIR_VERSION
from followup.fhir.outcome import checked
from followup.fhir.questionnaire import canonical
from followup.fhir.rows import instant

# Resource type -> the search parameters it takes (besides _count), and what each is.
SEARCHES: dict[str, dict[str, tuple[str, str]]] = {
    "Patient": {
        "identifier": ("token", "system|value: the record number a transaction enrolled the patient with"),
        "_lastUpdated": ("date", "when the patient's record last changed"),
    },
    "QuestionnaireResponse": {
        "patient": ("reference", "the patient who answered"),
        "_lastUpdated": ("date", "when the triage was recorded"),
    },
    "Communication": {
        "patient": ("reference", "the patient the message is to, from or about"),
        "_lastUpdated": ("date", "when the message last changed state"),
    },
    "Flag": {"patient": ("reference", "the patient"), "_lastUpdated": ("date", "when the escalation last changed")},
    "Task": {"patient": ("reference", "the patient"), "_lastUpdated": ("date", "when the escalation last changed")},
    "Appointment": {"patient": ("reference", "the patient"), "_lastUpdated": ("date", "when the booking changed")},
    "Slot": {"_lastUpdated": ("date", "when the booking behind the slot changed")},
    "Questionnaire": {},
}


def capability_statement(base_url: str, software_version: str, now: datetime) -> dict[str, Any]:
    resources = []
    for kind, params in SEARCHES.items():
        entry: dict[str, Any] = {
            "type": kind,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": n, "type": t, "documentation": d} for n, (t, d) in params.items()],
        }
        if kind == "Task":  # PUT with status accepted, in-progress or completed: acknowledge, book, close
            entry["interaction"].append({"code": "update"})
        if kind == "Patient":
            entry["conditionalCreate"] = True  # in a transaction, on the identifier: a repeat enrolls no one twice
        resources.append(entry)
    data = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(now),
        "kind": "instance",
        "software": {"name": "followup", "version": software_version},
        "implementation": {
            "description": "followup: twitching follow-up and red-flag escalation",
            "url": f"{base_url}/fhir",
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "instantiates": [],
        "rest": [
            {
                "mode": "server",
                "documentation": f"Enroll a patient: POST a transaction Bundle (a Patient with an identifier, and a "
                f"QuestionnaireResponse to {canonical(base_url)}) to {base_url}/fhir.",
                "security": {
                    "cors": False,
                    "description": "Authorization: Bearer <token>, the same tokens as /api (`followup token create`).",
                },
                "resource": resources,
                "interaction": [{"code": "transaction"}],
            }
        ],
    }
    data.pop("instantiates")
    return checked(CapabilityStatement, data)
