"""FHIR R4 under /fhir: resources that round-trip through the `fhir.resources` models, a transaction Bundle that
enrolls exactly as POST /api/triage does (once, however often it is sent), OperationOutcomes that name the element
at fault, the API's tokens, and keyset-paged searches. SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import ROOT, T0
from factories import answers, triage_body
from fastapi.testclient import TestClient
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from fhir.resources.R4B.slot import Slot
from fhir.resources.R4B.task import Task
from sqlmodel import func, select
from test_access import every_route

from followup import models as m
from followup.clock import FakeClock
from followup.content.pages import page_texts
from followup.core.intake_rules import load_intake_rules
from followup.core.replies import Reply
from followup.core.triage import Answers
from followup.core.vocab import EscalationStatus, MessageState, Tier
from followup.fhir import resources as fr
from followup.fhir.outcome import FhirError
from followup.fhir.questionnaire import questionnaire, read_answers
from followup.fhir.search import Key, cut, parse_search
from followup.runtime import Runtime
from followup.services import booking, fhir_intake, inbound, privacy
from followup.services.dispatch import Dispatcher

MRN = "urn:oid:2.16.840.1.113883.3.4711.1"  # the clinic's record numbers
MODELS = {
    "Patient": Patient,
    "QuestionnaireResponse": QuestionnaireResponse,
    "Communication": Communication,
    "Flag": Flag,
    "Task": Task,
    "Appointment": Appointment,
    "Slot": Slot,
}


def qr_items(given: dict[str, Any], consent: bool = True) -> list[dict[str, Any]]:
    out = []
    for name, value in given.items():
        if isinstance(value, bool):
            ans = [{"valueBoolean": value}]
        elif isinstance(value, list):
            ans = [{"valueCoding": {"code": v}} for v in value]
        elif isinstance(value, int):
            ans = [{"valueInteger": value}]
        else:
            ans = [{"valueDecimal": value}]
        out.append({"linkId": name, "answer": ans})
    out.append({"linkId": "consent", "answer": [{"valueBoolean": consent}]})
    return out


def bundle(mrn: str = "1001", phone: str = "+1 310 555 0142", email: str | None = "ana@example.org", **over: Any):
    """A clinic's transaction: a Patient with its record number and a QuestionnaireResponse to the intake."""
    telecom = [{"system": "phone", "value": phone, "use": "mobile", "rank": 1}]
    if email:
        telecom.append({"system": "email", "value": email, "rank": 2})
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": MRN, "value": mrn}],
        "name": [{"given": ["Ana"], "family": "Diaz"}],
        "telecom": telecom,
        "communication": [
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US"}]}, "preferred": True}
        ],
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "America/Los_Angeles"}],
    }
    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://127.0.0.1:8000/fhir/Questionnaire/intake",
        "status": "completed",
        "subject": {"reference": "urn:uuid:0b5e1c1e-0000-4000-8000-000000000001"},
        "item": qr_items(answers(**over.pop("answers", {}))),
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b5e1c1e-0000-4000-8000-000000000001",
                "resource": patient,
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={MRN}|{mrn}"},
            },
            {"resource": response, "request": {"method": "POST", "url": "QuestionnaireResponse"}},
        ],
    }


def post(client: TestClient, auth: dict[str, str], body: Any) -> Any:
    return client.post("/fhir", json=body, headers={**auth, "Content-Type": "application/fhir+json"})


def count(rt: Runtime, model: Any) -> int:
    with rt.db.session() as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def every_page(client: TestClient, auth: dict[str, str], url: str) -> tuple[list[dict[str, Any]], int]:
    """Follow next links to the end: every resource, and the number of pages."""
    found, pages = [], 0
    while url:
        r = client.get(url, headers=auth)
        assert r.status_code == 200, r.text
        page = Bundle.model_validate(r.json())
        pages += 1
        found += [e.resource.model_dump(mode="json", by_alias=True, exclude_none=True) for e in page.entry or []]
        url = next((link.url for link in page.link or [] if link.relation == "next"), "")
        url = url.removeprefix("http://127.0.0.1:8000")
    return found, pages


# ---- the transaction ---------------------------------------------------------------------------------------


AS_THE_API = {"no red flag": {}, "weakness": {"weakness": True}, "an emergency": {"breathing": True}}


@pytest.mark.parametrize("case", list(AS_THE_API))
def test_a_transaction_enrolls_exactly_as_the_api_triage_does(
    client: TestClient, auth: dict[str, str], rt: Runtime, case: str
) -> None:
    """The same answers through /fhir and through /api/triage give the same messages (program steps, or the
    escalation's advice and the clinic's alerts), the same consent record and the same triage source (a
    clinic-entered contact); the response is a transaction-response of 201s."""
    given = AS_THE_API[case]
    r = post(client, auth, bundle(answers=given))
    assert r.status_code == 200, r.text
    reply = Bundle.model_validate(r.json())
    assert reply.type == "transaction-response"
    assert [e.response.status for e in reply.entry] == ["201 Created", "201 Created"]
    pid = int(reply.entry[0].resource.id)
    api = client.post(
        "/api/triage", json=triage_body(phone="+1 310 555 0143", email="bo@example.org", answers=given), headers=auth
    ).json()
    with rt.db.session() as s:

        def plan(patient_id: int) -> list[tuple[Any, ...]]:
            esc = s.exec(select(m.Escalation.id).where(m.Escalation.patient_id == patient_id)).all()
            mine = (m.Message.patient_id == patient_id) | m.Message.escalation_id.in_(esc)  # type: ignore[union-attr]
            rows = s.exec(select(m.Message).where(mine).order_by(m.Message.id)).all()
            return [(x.step_id, x.kind, x.channel, x.template, x.to, x.due_at, x.status) for x in rows]

        def consents(patient_id: int) -> list[tuple[str, str, str]]:
            rows = s.exec(select(m.Consent).where(m.Consent.patient_id == patient_id)).all()
            return sorted((c.channel, c.action, c.source) for c in rows)

        assert plan(pid) and plan(pid) == plan(api["patient_id"])
        assert consents(pid) == consents(api["patient_id"])
        (triage,) = s.exec(select(m.Triage).where(m.Triage.patient_id == pid)).all()
        assert triage.source == "api" and triage.answers == Answers.model_validate(answers(**given)).model_dump()
        assert triage.disposition == ("escalated" if given else "enrolled")
        patient = s.get(m.Patient, pid)
        assert patient is not None and (patient.name, patient.phone) == ("Ana Diaz", "+13105550142")


def test_a_repeated_transaction_enrolls_no_one_twice(client: TestClient, auth: dict[str, str], rt: Runtime) -> None:
    """Sent again, the same Bundle writes nothing and answers 200 with the same resources."""
    first = post(client, auth, bundle()).json()
    rows = {model: count(rt, model) for model in (m.Patient, m.Triage, m.Message, m.Consent, m.FhirLink)}
    again = post(client, auth, bundle())
    assert again.status_code == 200
    second = again.json()
    assert [e["response"]["status"] for e in second["entry"]] == ["200 OK", "200 OK"]
    assert [e["response"]["location"] for e in second["entry"]] == [e["response"]["location"] for e in first["entry"]]
    assert [e["resource"] for e in second["entry"]] == [e["resource"] for e in first["entry"]]
    assert {model: count(rt, model) for model in rows} == rows


def test_new_answers_under_the_same_identifier_retriage_and_escalate(
    client: TestClient, auth: dict[str, str], rt: Runtime
) -> None:
    """Idempotent is not deaf: the same record number with a red flag now answered yes is a new triage that
    escalates, as /api/triage would; the Flag and Task are named in the response."""
    post(client, auth, bundle())
    r = post(client, auth, bundle(answers={"weakness": True}))
    assert r.status_code == 200
    entry = r.json()["entry"][1]
    assert entry["response"]["status"] == "201 Created"
    assert "escalated" in entry["response"]["outcome"]["issue"][0]["diagnostics"]
    assert count(rt, m.Patient) == 1 and count(rt, m.Triage) == 2 and count(rt, m.Escalation) == 1


def test_an_identifier_cannot_move_to_another_patient(client: TestClient, auth: dict[str, str], rt: Runtime) -> None:
    """A record number already enrolled with one patient, sent with another patient's contact, is refused (409,
    naming the identifier) and that triage is not kept."""
    post(client, auth, bundle())
    r = post(client, auth, bundle(phone="+1 310 555 0177", email="other@example.org", answers={"stress": 2}))
    assert r.status_code == 409
    issue = OperationOutcome.model_validate(r.json()).issue[0]
    assert issue.expression == ["Bundle.entry[0].resource.identifier[0]"] and issue.code == "conflict"
    assert count(rt, m.Patient) == 1 and count(rt, m.Triage) == 1


def test_erasing_a_patient_erases_their_record_number_link(
    client: TestClient, auth: dict[str, str], rt: Runtime
) -> None:
    """`patient erase` deletes the FHIR link with the rest (no foreign key stops it); the same Bundle sent after
    the erasure enrolls the patient anew, as a stranger."""
    pid = int(post(client, auth, bundle()).json()["entry"][0]["resource"]["id"])
    counts = privacy.erase_patient(rt, pid, "staff:1")
    assert counts["fhir_links"] == 1 and count(rt, m.FhirLink) == 0 and count(rt, m.Patient) == 0
    again = post(client, auth, bundle()).json()
    assert again["entry"][0]["response"]["status"] == "201 Created" and count(rt, m.FhirLink) == 1


def _item(b: dict[str, Any], link_id: str) -> int:
    return next(i for i, it in enumerate(b["entry"][1]["resource"]["item"]) if it["linkId"] == link_id)


def _set(path: str, value: Any, by_link: str | None = None) -> Any:
    def change(b: dict[str, Any]) -> int:
        """Make the change; returns the index of the item it touched."""
        target: Any = b
        i = _item(b, by_link) if by_link else 0
        keys = path.format(i=i).split("/")
        for k in keys[:-1]:
            target = target[int(k) if k.isdigit() else k]
        last = keys[-1]
        if value is DELETE:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value
        return i

    return change


DELETE = object()
P, Q = "entry/0/resource", "entry/1/resource"
INVALID = {  # what is wrong: (the change, the status, the element the OperationOutcome names)
    "a date that is not one": (_set(f"{P}/birthDate", "1990-13-45"), 400, "Bundle.entry[0].resource.birthDate"),
    "a yes/no answered 'maybe'": (
        _set(f"{Q}/item/{{i}}/answer/0/valueBoolean", "maybe", "weakness"),
        400,
        "Bundle.entry[1].resource.item[{i}].answer[0].valueBoolean",
    ),
    "a batch, not a transaction": (_set("type", "batch"), 400, "Bundle.type"),
    "no record number": (_set(f"{P}/identifier", DELETE), 422, "Bundle.entry[0].resource.identifier"),
    "a required question left out": (
        _set(f"{Q}/item/{{i}}", DELETE, "breathing"),
        422,
        "Bundle.entry[1].resource.item",
    ),
    "a question the intake does not ask": (
        _set(f"{Q}/item/{{i}}/linkId", "favourite_colour", "stress"),
        422,
        "Bundle.entry[1].resource.item[{i}].linkId",
    ),
    "sleep out of range": (
        _set(f"{Q}/item/{{i}}/answer/0/valueDecimal", 30.0, "sleep_hours"),
        422,
        "Bundle.entry[1].resource.item[{i}].answer[0]",
    ),
    "a place the intake does not list": (
        _set(f"{Q}/item/{{i}}/answer/1/valueCoding/code", "elbow", "locations"),
        422,
        "Bundle.entry[1].resource.item[{i}].answer[1]",
    ),
    "a number that is not a phone": (_set(f"{P}/telecom/0/value", "12"), 422, "Bundle.entry[0].resource.telecom[0]"),
    "a language messages are not written in": (
        _set(f"{P}/communication/0/language/coding/0/code", "fr"),
        422,
        "Bundle.entry[0].resource.communication[0].language",
    ),
    "no consent": (
        _set(f"{Q}/item/{{i}}/answer/0/valueBoolean", False, "consent"),
        422,
        "Bundle.entry[1].resource.item[{i}].answer[0]",
    ),
    "a resource other than the two": (_set(f"{Q}/resourceType", "Observation"), 422, "Bundle.entry[1].resource"),
    "another questionnaire": (
        _set(f"{Q}/questionnaire", "Questionnaire/phq9"),
        422,
        "Bundle.entry[1].resource.questionnaire",
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_an_invalid_bundle_is_refused_naming_the_element(
    client: TestClient, auth: dict[str, str], rt: Runtime, case: str
) -> None:
    """Each wrong element gets a 400 (not FHIR) or 422 (not a triage) OperationOutcome whose expression names it,
    and nothing is written."""
    change, status, expression = INVALID[case]
    body = bundle()
    expression = expression.format(i=change(body))
    r = post(client, auth, body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    outcome = OperationOutcome.model_validate(r.json())
    assert expression in [e for issue in outcome.issue for e in issue.expression or []], r.text
    assert count(rt, m.Patient) == 0 and count(rt, m.Triage) == 0


def test_a_body_that_is_not_json_gets_an_operation_outcome(client: TestClient, auth: dict[str, str]) -> None:
    """Not JSON at all: 400 with an OperationOutcome naming the Bundle."""
    r = client.post("/fhir", content=b"<Bundle/>", headers={**auth, "Content-Type": "application/fhir+xml"})
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Bundle"]


def _raw(b: dict[str, Any], old: str, new: str) -> bytes:
    return json.dumps(b).replace(old, new).encode()


HOSTILE = {  # a body no generator builds: (the bytes, the status: the FHIR models refuse lone surrogates)
    "a NUL in the name": (lambda: _raw(bundle(), '"Ana"', '"An\\u0000a"'), 422),
    "a lone surrogate in the name": (lambda: _raw(bundle(), '"Ana"', '"An\\ud800a"'), 400),
    "a lone surrogate in the record number": (lambda: _raw(bundle(), '"1001"', '"10\\udfff01"'), 400),
    "a surrogate in a question's id": (lambda: _raw(bundle(), '"stress"', '"str\\ud800ess"'), 400),
    "JSON nested ten thousand deep": (lambda: b"[" * 10_000 + b"]" * 10_000, 400),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bodies_get_a_4xx_and_write_nothing(
    client: TestClient, auth: dict[str, str], rt: Runtime, case: str
) -> None:
    """NUL, lone surrogates and absurd nesting are refused with an OperationOutcome, never a 500."""
    make, status = HOSTILE[case]
    r = client.post("/fhir", content=make(), headers={**auth, "Content-Type": "application/fhir+json"})
    assert r.status_code == status, r.text
    assert OperationOutcome.model_validate(r.json()).issue
    assert count(rt, m.Patient) == 0


# ---- reading back --------------------------------------------------------------------------------------------


def test_resources_round_trip_through_the_fhir_models(client: TestClient, auth: dict[str, str]) -> None:
    """Patient and QuestionnaireResponse read back validate as R4 models, hold what was sent, and sent again
    as a transaction they are the same submission (a replay)."""
    made = post(client, auth, bundle()).json()
    pid, tid = (e["resource"]["id"] for e in made["entry"])
    patient = Patient.model_validate(client.get(f"/fhir/Patient/{pid}", headers=auth).json())
    qr = QuestionnaireResponse.model_validate(client.get(f"/fhir/QuestionnaireResponse/{tid}", headers=auth).json())
    assert patient.identifier[0].value == "1001" and patient.name[0].text == "Ana Diaz"
    read, problems = read_answers(qr.model_dump(mode="json", by_alias=True, exclude_none=True), "QuestionnaireResponse")
    assert problems == [] and Answers.model_validate(read.answers) == Answers.model_validate(answers())
    echo = bundle()
    echo["entry"][0]["resource"] = patient.model_dump(mode="json", by_alias=True, exclude_none=True)
    echo["entry"][1]["resource"] = qr.model_dump(mode="json", by_alias=True, exclude_none=True)
    echo["entry"][1]["resource"]["subject"] = {"reference": echo["entry"][0]["fullUrl"]}
    r = post(client, auth, echo)
    assert r.status_code == 200 and r.json()["entry"][0]["response"]["status"] == "200 OK", r.text


def test_escalation_reads_as_flag_and_task_in_step_with_staff_actions(
    client: TestClient, auth: dict[str, str], rt: Runtime, clock: FakeClock
) -> None:
    """A red flag at triage is an active Flag and a requested Task; acknowledge accepts the Task, a booking puts
    it in progress with the Appointment (and its busy Slot) as output, close completes it and ends the Flag."""
    post(client, auth, bundle(answers={"weakness": True}))
    (esc,) = client.get("/api/escalations", headers=auth).json()
    eid, priority = esc["id"], {"emergency": "stat", "urgent": "urgent", "routine": "routine"}[esc["tier"]]

    def state() -> tuple[str, str, str]:
        flag = Flag.model_validate(client.get(f"/fhir/Flag/{eid}", headers=auth).json())
        task = Task.model_validate(client.get(f"/fhir/Task/{eid}", headers=auth).json())
        return flag.status, task.status, task.priority

    assert state() == ("active", "requested", priority)
    assert client.post(f"/api/escalations/{eid}/acknowledge", headers=auth).status_code == 200
    assert state() == ("active", "accepted", priority)
    slot_at = booking.view(rt, eid).slots[0]
    appt = booking.book(rt, eid, slot_at, "staff:1")
    assert state() == ("active", "in-progress", priority)
    task = client.get(f"/fhir/Task/{eid}", headers=auth).json()
    assert task["output"][0]["valueReference"]["reference"] == f"Appointment/{appt.id}"
    visit = Appointment.model_validate(client.get(f"/fhir/Appointment/{appt.id}", headers=auth).json())
    assert visit.status == "booked" and visit.slot[0].reference == f"Slot/{appt.id}"
    slot = Slot.model_validate(client.get(f"/fhir/Slot/{appt.id}", headers=auth).json())
    assert slot.status == "busy" and slot.start == visit.start
    assert client.post(f"/api/escalations/{eid}/close", json={"note": "seen"}, headers=auth).status_code == 200
    assert state() == ("inactive", "completed", priority)


def test_the_clinics_system_moves_the_task_and_the_escalation_follows(
    client: TestClient, auth: dict[str, str], rt: Runtime
) -> None:
    """PUT back a Task as accepted, in-progress, then completed with a note: the escalation is acknowledged,
    booked, closed with that note, each step audited under the token; the Flag ends."""
    post(client, auth, bundle(answers={"breathing": True}))
    (esc,) = client.get("/api/escalations", headers=auth).json()
    url = f"/fhir/Task/{esc['id']}"
    for status, escalation in (("accepted", "acknowledged"), ("in-progress", "booked"), ("completed", "closed")):
        task = client.get(url, headers=auth).json()
        task["status"] = status
        if status == "completed":
            task["note"] = [{"text": "called back, seen in clinic"}]
        r = client.put(url, json=task, headers=auth)
        assert r.status_code == 200 and r.json()["status"] == status, r.text
        assert client.get(f"/api/escalations/{esc['id']}", headers=auth).json()["status"] == escalation
    assert client.get(f"/api/escalations/{esc['id']}", headers=auth).json()["note"] == "called back, seen in clinic"
    assert client.get(f"/fhir/Flag/{esc['id']}", headers=auth).json()["status"] == "inactive"
    with rt.db.session() as s:
        actions = s.exec(select(m.AuditLog.action).where(m.AuditLog.actor.startswith("token:"))).all()
    assert {"escalation.acknowledge", "escalation.book", "escalation.close"} <= set(actions)


TASK_REFUSALS = {  # what the Task sent back says: (status, element named)
    "cancelled": (422, "Task.status"),
    "requested": (422, "Task.status"),  # back to open: not a status staff set
    "wrong id": (422, "Task.id"),
    "not a Task": (400, "Task"),
    "bad date": (400, "Task.authoredOn"),
}


def test_a_task_sent_back_wrong_changes_nothing(client: TestClient, auth: dict[str, str]) -> None:
    """A status staff cannot set, another Task's id, an invalid Task, or a step a closed escalation cannot take:
    an OperationOutcome naming the element, and the escalation as it was."""
    post(client, auth, bundle(answers={"breathing": True}))
    (esc,) = client.get("/api/escalations", headers=auth).json()
    url = f"/fhir/Task/{esc['id']}"
    client.put(url, json={**client.get(url, headers=auth).json(), "status": "accepted"}, headers=auth)
    got = {}
    for case in TASK_REFUSALS:
        task = client.get(url, headers=auth).json()
        if case == "wrong id":
            task["id"] = "999"
        elif case == "not a Task":
            task["resourceType"] = "Flag"
        elif case == "bad date":
            task["authoredOn"] = "yesterday"
        else:
            task["status"] = case
        r = client.put(url, json=task, headers=auth)
        got[case] = (r.status_code, r.json()["issue"][0]["expression"][0])
    assert got == TASK_REFUSALS
    assert client.get(f"/api/escalations/{esc['id']}", headers=auth).json()["status"] == "acknowledged"
    client.post(f"/api/escalations/{esc['id']}/close", json={"note": "done"}, headers=auth)
    r = client.put(url, json={**client.get(url, headers=auth).json(), "status": "accepted"}, headers=auth)
    assert r.status_code == 409 and r.json()["issue"][0]["expression"] == ["Task.status"]  # a closed one stays so


def test_messages_in_and_out_read_as_communications(
    client: TestClient, auth: dict[str, str], rt: Runtime, clock: FakeClock
) -> None:
    """Scheduled messages are in preparation, sent ones completed with their text; a reply is a Communication
    from the patient, and one that reads as an emergency has priority stat."""
    pid = post(client, auth, bundle()).json()["entry"][0]["resource"]["id"]
    clock.advance(timedelta(minutes=5))
    Dispatcher(rt).run_once()
    inbound.receive(rt, Reply("sms", "twilio:SMfhir1", "+13105550142", "I can't breathe"))
    found, _ = every_page(client, auth, f"/fhir/Communication?patient={pid}&_count=100")
    for res in found:
        Communication.model_validate(res)
    out = [c for c in found if c["id"].startswith("out-")]
    replies = [c for c in found if c["id"].startswith("in-")]
    assert {c["status"] for c in out} >= {"completed", "preparation"}
    assert all(c.get("payload") for c in out if c["status"] == "completed")
    (reply,) = replies
    assert reply["sender"]["reference"] == f"Patient/{pid}" and reply["priority"] == "stat"
    assert reply["payload"][0]["contentString"] == "I can't breathe"


# ---- search ----------------------------------------------------------------------------------------------------


def test_searches_page_by_next_links_without_gaps_or_repeats(
    client: TestClient, auth: dict[str, str], rt: Runtime, clock: FakeClock
) -> None:
    """Five patients in pages of two: three pages, each patient once, in lastUpdated order; `_lastUpdated`
    bounds the set; Communication pages across outbound and inbound alike."""
    for n in range(5):
        post(client, auth, bundle(mrn=f"20{n}", phone=f"+1 310 555 01{n}0", email=None))
        clock.advance(timedelta(seconds=0 if n == 1 else 1))  # 201 and 202 share an instant across a page break
    patients, pages = every_page(client, auth, "/fhir/Patient?_count=2")
    assert pages == 3 and [p["identifier"][0]["value"] for p in patients] == [f"20{n}" for n in range(5)]
    since = (T0 + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    later, _ = every_page(client, auth, f"/fhir/Patient?_lastUpdated=ge{since}&_count=2")
    assert [p["identifier"][0]["value"] for p in later] == ["203", "204"]
    inbound.receive(rt, Reply("sms", "twilio:SMpage1", "+13105550100", "twitching is better"))
    inbound.receive(rt, Reply("sms", "twilio:SMpage2", "+13105550110", "still the same"))
    whole, _ = every_page(client, auth, "/fhir/Communication?_count=100")
    paged, pages = every_page(client, auth, "/fhir/Communication?_count=3")
    assert [c["id"] for c in paged] == [c["id"] for c in whole] and pages > 3
    assert {c["id"][:3] for c in whole} == {"out", "in-"}


def test_search_by_patient_returns_only_theirs(client: TestClient, auth: dict[str, str]) -> None:
    """`patient` (an id, Patient/<id> or its URL) narrows every search to that patient."""
    a = post(client, auth, bundle(mrn="1", answers={"weakness": True})).json()["entry"][0]["resource"]["id"]
    post(client, auth, bundle(mrn="2", phone="+1 310 555 0150", email=None, answers={"breathing": True}))
    for kind in ("Flag", "Task", "QuestionnaireResponse", "Communication"):
        for ref in (a, f"Patient/{a}", f"http://127.0.0.1:8000/fhir/Patient/{a}"):
            found, _ = every_page(client, auth, f"/fhir/{kind}?patient={ref}")
            assert found, kind
            field = {"Task": "for", "Communication": "subject"}.get(kind, "subject")
            assert {r[field]["reference"] for r in found} == {f"Patient/{a}"}, kind


NOT_FOUND = [
    "/fhir/Patient/999",
    "/fhir/Communication/out-999",
    "/fhir/Communication/7",
    "/fhir/Flag/abc",
    "/fhir/Task/99999999999",
    "/fhir/Slot/-1",
]


def test_reading_what_is_not_there_is_a_404_operation_outcome(client: TestClient, auth: dict[str, str]) -> None:
    """An id that is not there, or is no id of ours, answers 404 with an OperationOutcome, never a 500."""
    got = {url: client.get(url, headers=auth) for url in NOT_FOUND}
    assert {url: (r.status_code, r.json()["issue"][0]["code"]) for url, r in got.items()} == {
        url: (404, "not-found") for url in NOT_FOUND
    }


def test_a_patient_is_found_by_the_record_number_that_enrolled_them(client: TestClient, auth: dict[str, str]) -> None:
    """`identifier=system|value` finds the one patient a transaction enrolled with it, and no one for another."""
    made = post(client, auth, bundle(mrn="77")).json()["entry"][0]["resource"]["id"]
    post(client, auth, bundle(mrn="78", phone="+1 310 555 0160", email=None))
    found, _ = every_page(client, auth, f"/fhir/Patient?identifier={MRN}|77")
    assert [p["id"] for p in found] == [made]
    assert every_page(client, auth, f"/fhir/Patient?identifier={MRN}|79")[0] == []


SEARCH_REFUSALS = {
    "/fhir/Flag?patinet=1": "patinet",  # a typo must not answer with everyone
    "/fhir/Slot?patient=1": "patient",
    "/fhir/Task?_lastUpdated=yesterday": "_lastUpdated",
    "/fhir/Task?_count=0": "_count",
    "/fhir/Task?_cursor=bm90LWEtY3Vyc29y": "_cursor",
    "/fhir/Task?patient=Observation/1": "patient",
    "/fhir/Patient?identifier=MRN-1001": "identifier",
    "/fhir/Flag?identifier=a|b": "identifier",
}


def test_bad_search_parameters_are_refused_by_name(client: TestClient, auth: dict[str, str]) -> None:
    """An unknown or malformed search parameter answers 400 with an OperationOutcome naming it."""
    got = {url: client.get(url, headers=auth) for url in SEARCH_REFUSALS}
    assert {url: (r.status_code, r.json()["issue"][0]["expression"][0]) for url, r in got.items()} == {
        url: (400, name) for url, name in SEARCH_REFUSALS.items()
    }


# ---- access, metadata, the Questionnaire ---------------------------------------------------------------------


def test_fhir_wants_an_api_token_except_for_metadata(client: TestClient, auth: dict[str, str]) -> None:
    """Every /fhir route but /fhir/metadata answers 401 without a token or with a wrong one; metadata is a valid
    CapabilityStatement for R4 that declares the transaction."""
    routes = [(method, path) for method, path, _ in every_route(client.app) if path.startswith("/fhir")]  # type: ignore[arg-type]
    assert len(routes) == 1 + 2 + 1 + 1 + 2 * 7  # metadata, Questionnaire (2), transaction, Task PUT, read+search x7
    got = {}
    for method, path in routes:
        url = path.replace("{rid}", "1")
        for headers in ({}, {"Authorization": "Bearer fu_wrong"}):
            got[(method, url, bool(headers))] = client.request(method, url, headers=headers, json={}).status_code
    assert got == {key: 200 if key[1] == "/fhir/metadata" else 401 for key in got}
    cs = CapabilityStatement.model_validate(client.get("/fhir/metadata").json())
    assert cs.fhirVersion == "4.0.1" and cs.rest[0].interaction[0].code == "transaction"
    assert {r.type for r in cs.rest[0].resource} >= set(MODELS)


def test_the_questionnaire_is_the_intake_in_both_languages(client: TestClient, auth: dict[str, str]) -> None:
    """GET /fhir/Questionnaire/intake: one item per triage answer (and the consent), the red flags of
    clinic/intake.toml coded with their criterion, Spanish words as translations."""
    q = Questionnaire.model_validate(client.get("/fhir/Questionnaire/intake", headers=auth).json())
    assert [i.linkId for i in q.item] == [*Answers.model_fields, "consent"]
    coded = {i.linkId: i.code[0].code for i in q.item if i.code}
    assert coded["weakness"] == "weakness" and coded["atrophy"] == "wasting" and coded["onset_weeks"] == "persisting"
    found, _ = every_page(client, auth, "/fhir/Questionnaire")
    assert [r["id"] for r in found] == ["intake"]
    weakness = next(i for i in q.item if i.linkId == "weakness")
    spanish = weakness.text__ext.extension[0].extension[1].valueString
    assert spanish == page_texts(ROOT / "templates", "es")["intake"]["questions"]["weakness"]


def test_the_questionnaire_follows_clinic_intake_toml(tmp_path: Path) -> None:
    """Change clinic/intake.toml and the Questionnaire changes: only the answers it lists carry red-flag codes."""
    rules = tmp_path / "intake.toml"
    rules.write_text('[answers]\nbreathing = { criterion = "breathing" }\n[duration]\npersisting_weeks = 8\n')
    pages = {lang: page_texts(ROOT / "templates", lang) for lang in ("en", "es")}
    q = questionnaire("https://c.example", pages, load_intake_rules(rules), "1")
    coded = {i["linkId"]: i["code"][0] for i in q["item"] if "code" in i}
    assert set(coded) == {"breathing", "onset_weeks"} and "8 weeks" in coded["onset_weeks"]["display"]


def test_every_state_the_service_stores_has_a_fhir_status() -> None:
    """A message state, escalation status or tier added to core/vocab.py without a FHIR mapping fails here."""
    assert set(fr.COMMUNICATION_STATUS) == set(MessageState)
    assert set(fr.TASK_STATUS) == set(EscalationStatus)
    assert set(fr.TASK_PRIORITY) == set(Tier)


@pytest.mark.parametrize("state", list(MessageState))
def test_a_message_in_any_state_is_a_valid_communication(state: MessageState) -> None:
    """Each state maps to its event status, and the resource survives a round trip through the R4B model."""
    row = SimpleNamespace(
        id=3,
        patient_id=2,
        escalation_id=1,
        channel="email",
        to=None,
        kind="tip",
        status=state,
        subject="Sleep",
        body="Try a fixed bedtime.",
        reason=None,
        due_at=AT,
        sent_at=AT,
        delivered_at=None,
        updated_at=AT,
    )
    res = fr.communication_out(row)
    again = Communication.model_validate(res).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert again["status"] == fr.COMMUNICATION_STATUS[state] and again["about"] == [{"reference": "Flag/1"}]
    assert again["payload"] == res["payload"] and again["subject"] == {"reference": "Patient/2"}


# ---- the pure parts: search parameters and the keyset ----------------------------------------------------------

AT = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
DATES = {  # _lastUpdated value: (since, until)
    "2026-11-25": (datetime(2026, 11, 25, tzinfo=UTC), datetime(2026, 11, 26, tzinfo=UTC)),
    "ge2026-11-25": (datetime(2026, 11, 25, tzinfo=UTC), None),
    "gt2026-11-25": (datetime(2026, 11, 26, tzinfo=UTC), None),
    "lt2026-11-25": (None, datetime(2026, 11, 25, tzinfo=UTC)),
    "le2026-11-25": (None, datetime(2026, 11, 26, tzinfo=UTC)),
    "ge2026-11-25T18:00:00Z": (AT, None),
    "lt2026-11-25T10:00:00-08:00": (None, AT),
}


def test_last_updated_reads_prefixes_by_precision() -> None:
    """A day covers the whole day; gt/le move past it; an instant is exact, its zone honoured."""
    got = {v: (lambda s: (s.since, s.until))(parse_search([("_lastUpdated", v)], ["_lastUpdated"])) for v in DATES}
    assert got == DATES


def test_two_last_updated_bounds_narrow_to_their_overlap() -> None:
    """ge and lt together keep both bounds."""
    s = parse_search([("_lastUpdated", "ge2026-11-01"), ("_lastUpdated", "lt2026-12-01")], ["_lastUpdated"])
    assert (s.since, s.until) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


CUTS = {  # (table rank, cursor rank): which rows of that table follow the cursor
    (0, 0): "after_id",
    (1, 1): "after_id",
    (1, 0): "at_or_after",
    (0, 1): "after",
}


def test_the_keyset_cut_for_each_table() -> None:
    """After a cursor: the same table continues by id at the same instant, a later-ranked one from the instant,
    an earlier-ranked one only after it; no cursor, everything."""
    assert {k: cut(k[0], Key(AT, k[1], 7)) for k in CUTS} == CUTS
    assert cut(0, None) == "all"


def test_a_cursor_survives_its_round_trip_and_a_forged_one_is_refused() -> None:
    """The next link's cursor decodes to the key it was made from; anything else is a 400 naming `_cursor`."""
    key = Key(AT + timedelta(microseconds=5), 1, 42)
    assert Key.decode(key.encode()) == key
    with pytest.raises(FhirError) as exc:
        Key.decode("%%%")
    assert exc.value.issues[0].expression == "_cursor"


def test_the_readme_example_enrolls_once(client: TestClient, auth: dict[str, str]) -> None:
    """docs/example-fhir-transaction.json, the README's worked example, enrolls its patient (201) and, sent again,
    answers 200 with the same resources."""
    data = json.loads((ROOT / "docs/example-fhir-transaction.json").read_text())
    assert Bundle.model_validate(copy.deepcopy(data)).type == "transaction"
    first, again = post(client, auth, data), post(client, auth, data)
    assert [e["response"]["status"] for e in first.json()["entry"]] == ["201 Created"] * 2
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["200 OK"] * 2
    assert first.json()["entry"][0]["resource"] == again.json()["entry"][0]["resource"]


def test_two_copies_racing_enroll_one_patient_once(rt: Runtime) -> None:
    """The same Bundle posted twice at the same moment (a retrying interface engine): one triage, one link, and
    both answers name the same Patient and QuestionnaireResponse."""
    barrier = threading.Barrier(2)
    answers_: list[dict[str, Any]] = []

    def send() -> None:
        barrier.wait()
        answers_.append(fhir_intake.transaction(rt, bundle(), "token:1"))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    locations = {tuple(e["response"]["location"] for e in a["entry"]) for a in answers_}
    assert len(answers_) == 2 and len(locations) == 1
    assert count(rt, m.Patient) == 1 and count(rt, m.Triage) == 1 and count(rt, m.FhirLink) == 1
