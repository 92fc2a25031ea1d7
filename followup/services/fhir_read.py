"""The FHIR reads: one resource by id, and keyset-paged searches by patient and lastUpdated.

Rows become resources through the pure mappers of `followup.fhir`; this module only finds the rows. Flag and Task
are two views of one escalation, Appointment and Slot of one booking, so each shares its row's id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_
from sqlmodel import Session, col, select

from followup import __version__
from followup.content.pages import page_texts
from followup.core.vocab import AppointmentStatus
from followup.fhir import resources as fr
from followup.fhir.capability import capability_statement
from followup.fhir.questionnaire import questionnaire
from followup.fhir.search import Key, Search, cut, searchset
from followup.models import Appointment, Escalation, FhirLink, Inbound, Message, Patient, Triage
from followup.runtime import Runtime


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Table:
    """One table behind a resource type: its rank in the search order, its lastUpdated and its patient column."""

    model: Any
    rank: int
    updated: Callable[[], Any]  # the lastUpdated column (or expression)
    updated_of: Callable[[Any], datetime]  # the same, read from a row
    patient: Callable[[], Any]


PATIENT = Table(Patient, 0, lambda: col(Patient.updated_at), lambda r: r.updated_at, lambda: col(Patient.id))
TRIAGE = Table(Triage, 0, lambda: col(Triage.created_at), lambda r: r.created_at, lambda: col(Triage.patient_id))
MESSAGE = Table(Message, 0, lambda: col(Message.updated_at), lambda r: r.updated_at, lambda: col(Message.patient_id))
INBOUND = Table(
    Inbound,
    1,
    lambda: func.coalesce(col(Inbound.processed_at), col(Inbound.received_at)),
    lambda r: r.processed_at or r.received_at,
    lambda: col(Inbound.patient_id),
)
ESCALATION = Table(
    Escalation, 0, lambda: col(Escalation.updated_at), lambda r: r.updated_at, lambda: col(Escalation.patient_id)
)
APPOINTMENT = Table(
    Appointment, 0, lambda: col(Appointment.updated_at), lambda r: r.updated_at, lambda: col(Appointment.patient_id)
)
TABLES: dict[str, tuple[Table, ...]] = {
    "Patient": (PATIENT,),
    "QuestionnaireResponse": (TRIAGE,),
    "Communication": (MESSAGE, INBOUND),
    "Flag": (ESCALATION,),
    "Task": (ESCALATION,),
    "Appointment": (APPOINTMENT,),
    "Slot": (APPOINTMENT,),
}


def base_url(rt: Runtime) -> str:
    return rt.settings.server.public_url.rstrip("/")


def metadata(rt: Runtime) -> dict[str, Any]:
    return capability_statement(base_url(rt), __version__, rt.clock.now())


def intake_questionnaire(rt: Runtime) -> dict[str, Any]:
    root = rt.settings.clinic.templates
    pages = {lang: page_texts(root, lang) for lang in ("en", *rt.settings.clinic.languages)}
    return questionnaire(base_url(rt), pages, rt.intake, __version__)


def questionnaires(rt: Runtime) -> dict[str, Any]:
    """Questionnaire search: the intake, the one there is."""
    return searchset(base_url(rt), "Questionnaire", Search(), [intake_questionnaire(rt)], None)


def read(rt: Runtime, kind: str, rid: str) -> dict[str, Any]:
    """One resource by type and id, or NotFound."""
    table: Table | None = TABLES[kind][0]
    if kind == "Communication":  # out-<message id> or in-<inbound id>
        prefix, _, rid = rid.partition("-")
        table = {"out": MESSAGE, "in": INBOUND}.get(prefix)
    if table is None or not rid.isdigit() or len(rid) > 9:
        raise NotFound(f"{kind}/{rid}")
    with rt.db.session() as s:
        row = s.get(table.model, int(rid))
        if row is None:
            raise NotFound(f"{kind}/{rid}")
        return _resources(rt, s, kind, [(table, row)])[0]


def search(rt: Runtime, kind: str, q: Search) -> dict[str, Any]:
    """A page of `kind` in lastUpdated order, after `q.after`, with a next link when more may follow."""
    with rt.db.session() as s:
        found: list[tuple[Key, Table, Any]] = []
        for table in TABLES[kind]:
            found += _page(s, table, q)
        found.sort(key=lambda f: (f[0].at, f[0].rank, f[0].id))
        more = len(found) > q.count
        found = found[: q.count]
        resources = _resources(rt, s, kind, [(t, row) for _, t, row in found])
    return searchset(base_url(rt), kind, q, resources, found[-1][0] if more and found else None)


def _page(s: Session, table: Table, q: Search) -> list[tuple[Key, Table, Any]]:
    updated, ident = table.updated(), col(table.model.id)
    conds: list[ColumnElement[bool]] = []
    if q.patient_id is not None:
        conds.append(table.patient() == q.patient_id)
    if q.identifier is not None:
        system, value = q.identifier
        linked = select(FhirLink.patient_id).where(FhirLink.system == system, FhirLink.value == value)
        conds.append(table.patient().in_(linked))
    if q.since is not None:
        conds.append(updated >= q.since)
    if q.until is not None:
        conds.append(updated < q.until)
    how = cut(table.rank, q.after)
    if q.after is not None:
        if how == "at_or_after":
            conds.append(updated >= q.after.at)
        elif how == "after":
            conds.append(updated > q.after.at)
        else:
            conds.append(or_(updated > q.after.at, and_(updated == q.after.at, ident > q.after.id)))
    stmt = select(table.model).where(*conds).order_by(updated, ident).limit(q.count + 1)
    return [(Key(table.updated_of(r), table.rank, r.id), table, r) for r in s.exec(stmt).all()]


def _resources(rt: Runtime, s: Session, kind: str, rows: list[tuple[Table, Any]]) -> list[dict[str, Any]]:
    base = base_url(rt)
    if kind == "Patient":
        ids = [r.id for _, r in rows]
        links: dict[int, list[tuple[str, str]]] = {}
        for link in s.exec(select(FhirLink).where(col(FhirLink.patient_id).in_(ids)).order_by(col(FhirLink.id))):
            links.setdefault(link.patient_id, []).append((link.system, link.value))
        return [fr.patient(r, links.get(r.id, [])) for _, r in rows]
    if kind == "QuestionnaireResponse":
        return [fr.questionnaire_response(r, base) for _, r in rows]
    if kind == "Communication":
        return [fr.communication_out(r) if t is MESSAGE else fr.communication_in(r) for t, r in rows]
    if kind == "Flag":
        return [fr.flag(r, base) for _, r in rows]
    if kind == "Task":
        booked = {
            a.escalation_id: a.id
            for a in s.exec(
                select(Appointment).where(
                    col(Appointment.escalation_id).in_([r.id for _, r in rows]),
                    Appointment.status == AppointmentStatus.BOOKED,
                )
            )
        }
        return [fr.task(r, base, booked.get(r.id)) for _, r in rows]
    if kind == "Appointment":
        return [fr.appointment(r) for _, r in rows]
    return [fr.slot(r) for _, r in rows]
