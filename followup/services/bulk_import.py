"""Bulk enrollment from the clinic: `followup import FILE` and `POST /api/triage/batch`.

Each row is checked by the triage's own rules (`core.bulk.check_row`), then enrolled exactly as `POST /api/triage`
enrolls a new patient: the patient, their consent per contact, the triage, the audit entry and every program step as
a scheduled message. Good rows are written in chunks, one transaction each, with multi-row INSERTs; the schedule is
computed by the pure functions of `core.schedule` (the same ones `enrollment` uses).

Rules:
- **Idempotent on `external_id`** (the clinic's id for the patient, unique in the database): a row whose id is
  already held is reported `already` and nothing is written; the patients insert is `ON CONFLICT (external_id) DO
  NOTHING`, so two imports racing enroll no one twice either.
- **Never touches a patient enrolled another way.** A row whose phone or email belongs to another patient (one
  without that external id) is rejected, naming the field; that patient is not changed, and the answer says
  nothing about them (the audit log records the match, by ids only). Such a patient is updated through
  `POST /api/triage` or the dashboard, never by an import.
- **Contacts count as confirmed**, as for every contact the clinic enters (README, Security): the file comes from
  the clinic's records over an API token or the server's own command line, not from the public form, so no
  double opt-in request is sent. Consent is still required on every row (`consent`), as on the API.
- **A red flag in the answers** escalates as the API does (the on-call contacts are alerted): such a row goes
  through `enrollment.record_triage` on its own, in its own transaction.
- **Nothing half-written.** A chunk the database refuses (a constraint, e.g. a number another route took a moment
  ago) is rolled back whole and its rows are retried one by one, each in its own transaction: every row ends
  enrolled completely or not at all, and the one refused is reported with the field the constraint names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import JSON, Connection, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select

from followup.core.bulk import BadRow, GoodRow, RawRow, check_row
from followup.core.program import Step
from followup.core.schedule import Window, added_step_send
from followup.core.vocab import Channel, PatientStatus
from followup.models import AuditLog, Consent, Message, Patient, Triage
from followup.runtime import Runtime
from followup.services import audit, confirmation, drafts
from followup.services.enrollment import DEFAULT_CONSENT_TEXT, enroll, new_patient, new_patient_values, record_triage
from followup.services.queue import message_values

Status = Literal["enrolled", "escalated", "already", "rejected"]
CHUNK = 500
HELD = "already held by another patient; not imported (update that patient through POST /api/triage)"


@dataclass(frozen=True)
class Outcome:
    """What became of one row. `where` is its line in the file, or its index in the API's list."""

    where: int
    external_id: str | None
    status: Status
    patient_id: int | None = None
    field: str | None = None
    message: str | None = None


@dataclass
class Tally:
    enrolled: int = 0
    escalated: int = 0
    already: int = 0
    rejected: int = 0
    first_rejected: list[Outcome] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.enrolled + self.escalated + self.already + self.rejected

    def add(self, o: Outcome) -> None:
        setattr(self, o.status, getattr(self, o.status) + 1)


def import_rows(
    rt: Runtime,
    rows: Iterable[RawRow],
    *,
    actor: str,
    source: str = "import",
    chunk_size: int = CHUNK,
    report: Callable[[Outcome], None] | None = None,
    progress: Callable[[Tally], None] | None = None,
) -> Tally:
    """Check and enroll every row (see the module docstring); `report` hears of each row, `progress` of each
    chunk. Rows already committed stay committed if a later chunk raises: a rerun carries on where it stopped."""
    tally = Tally()
    seen = _Seen()
    region, allowed = rt.settings.clinic.default_region, rt.settings.texting_regions
    checked = (check_row(r, region, allowed) for r in rows)

    def finish(outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            tally.add(outcome)
            if report is not None:
                report(outcome)
        if progress is not None:
            progress(tally)

    # One chunk is written (in one thread, in order) while the next is read and checked: the database's time and
    # the checking's overlap. A chunk that fails stops the import before the next is written.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import") as writer:
        pending: Future[list[Outcome]] | None = None
        for chunk in _chunks(checked, chunk_size):
            if pending is not None:
                finish(pending.result())
            pending = writer.submit(_import_chunk, rt, chunk, seen, actor=actor, source=source)
        if pending is not None:
            finish(pending.result())
    if tally.rows:
        audit.note(
            rt,
            actor,
            "import.finished",
            "",
            source=source,
            enrolled=tally.enrolled,
            escalated=tally.escalated,
            already=tally.already,
            rejected=tally.rejected,
        )
    return tally


def _chunks(rows: Iterable[GoodRow | BadRow], size: int) -> Iterator[list[GoodRow | BadRow]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


@dataclass
class _Seen:
    """Where each external id, number and address first appeared in this input, to refuse a second row with one."""

    external_id: dict[str, int] = field(default_factory=dict)
    phone: dict[str, int] = field(default_factory=dict)
    email: dict[str, int] = field(default_factory=dict)

    def repeat(self, row: GoodRow) -> BadRow | None:
        for name, value in (
            ("external_id", row.external_id),
            ("phone", row.contact.phone),
            ("email", row.contact.email),
        ):
            if value is None:
                continue
            first = getattr(self, name).setdefault(value, row.where)
            if first != row.where:
                return BadRow(row.where, row.external_id, name, f"the same as on row {first} of this input")
        return None


def _rejected(b: BadRow) -> Outcome:
    return Outcome(b.where, b.external_id, "rejected", field=b.field, message=b.message)


def _import_chunk(rt: Runtime, chunk: list[GoodRow | BadRow], seen: _Seen, *, actor: str, source: str) -> list[Outcome]:
    outcomes: dict[int, Outcome] = {}
    good: list[GoodRow] = []
    for row in chunk:
        bad = row if isinstance(row, BadRow) else seen.repeat(row)
        if bad is not None:
            outcomes[row.where] = _rejected(bad)
        else:
            assert isinstance(row, GoodRow)
            good.append(row)
    one_by_one: list[GoodRow] = []
    if good:
        try:
            done, one_by_one = _write_chunk(rt, good, actor=actor, source=source)
            outcomes.update((o.where, o) for o in done)
        except IntegrityError:
            one_by_one = good  # rolled back whole: each row again in its own transaction
    for row in one_by_one:
        outcomes[row.where] = _write_one(rt, row, actor=actor, source=source)
    rt.wake()
    return [outcomes[r.where] for r in chunk]


def _table(model: type[SQLModel]) -> Table:
    table: Table = getattr(model, "__table__")  # noqa: B009 - SQLModel's table models declare no __table__ type
    return table


def _insert(s: Session, table: Any) -> Any:
    """A dialect's INSERT, for ON CONFLICT."""
    dialect = s.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _write_chunk(rt: Runtime, rows: list[GoodRow], *, actor: str, source: str) -> tuple[list[Outcome], list[GoodRow]]:
    """Enroll the chunk's rows in one transaction: (the outcomes, the rows left to `_write_one`: red flags)."""
    now = rt.clock.now()
    outcomes: list[Outcome] = []
    with rt.db.session() as s:
        held = _held(s, rows)
        fresh: list[GoodRow] = []
        flagged: list[GoodRow] = []
        for row in rows:
            if row.external_id in held.by_external_id:
                outcomes.append(Outcome(row.where, row.external_id, "already", held.by_external_id[row.external_id]))
            elif bad := held.collision(row):
                outcomes.append(_rejected(bad))
                audit.record(
                    s, now, actor, "import.contact_already_held", held.subject(row), field=bad.field, row=row.where
                )
            elif rt.intake.red_flags(row.data.answers):
                flagged.append(row)
            else:
                fresh.append(row)
        if fresh:
            outcomes.extend(_enroll_rows(rt, s, fresh, now, actor=actor, source=source))
        s.commit()
    return outcomes, flagged


@dataclass
class _Held:
    by_external_id: dict[str, int]
    phones: dict[str, int]
    emails: dict[str, int]

    def collision(self, row: GoodRow) -> BadRow | None:
        if row.contact.phone in self.phones:
            return BadRow(row.where, row.external_id, "phone", HELD)
        if row.contact.email in self.emails:
            return BadRow(row.where, row.external_id, "email", HELD)
        return None

    def subject(self, row: GoodRow) -> str:
        holder = self.phones.get(row.contact.phone or "") or self.emails.get(row.contact.email or "")
        return f"patient:{holder}"


def _held(s: Session, rows: list[GoodRow]) -> _Held:
    """The patients already holding the rows' external ids, numbers and addresses (the numbers and addresses only
    of rows whose external id is new: a rerun looks up nothing else)."""
    if s.get_bind().dialect.name == "postgresql":
        # Only btree lookups: the trigram GIN indexes on phone and email (the patient search's) also answer `=`,
        # and without statistics for rows just imported the planner can prefer them; the email lookups of a 3,000
        # row rerun took 4.5 s with bitmap scans allowed, 0.04 s without (bench/README.md).
        s.connection().exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    ids = [r.external_id for r in rows]
    by_id = {
        str(k): int(v or 0)
        for k, v in s.exec(select(Patient.external_id, Patient.id).where(col(Patient.external_id).in_(ids))).all()
    }
    new = [r for r in rows if r.external_id not in by_id]
    phones = [r.contact.phone for r in new if r.contact.phone]
    emails = [r.contact.email for r in new if r.contact.email]
    by_phone = s.exec(select(Patient.phone, Patient.id).where(col(Patient.phone).in_(phones))).all() if phones else []
    by_email = s.exec(select(Patient.email, Patient.id).where(col(Patient.email).in_(emails))).all() if emails else []
    return _Held(by_id, {str(k): int(v or 0) for k, v in by_phone}, {str(k): int(v or 0) for k, v in by_email})


def _enroll_rows(
    rt: Runtime, s: Session, rows: list[GoodRow], now: datetime, *, actor: str, source: str
) -> list[Outcome]:
    """Multi-row INSERTs of the patients (ON CONFLICT on the external id), then of their triages, consents,
    program steps and audit entries. No commit."""
    ids = _insert_patients(s, [_patient_values(r, now) for r in rows])
    outcomes = []
    enrolled: list[tuple[GoodRow, int]] = []
    for r in rows:
        if r.external_id in ids:
            enrolled.append((r, ids[r.external_id]))
            outcomes.append(Outcome(r.where, r.external_id, "enrolled", ids[r.external_id]))
        else:  # another import enrolled it since `_held` looked
            outcomes.append(Outcome(r.where, r.external_id, "already"))
    if not enrolled:
        return outcomes
    triage_values = [
        dict(
            patient_id=pid,
            source=source,
            answers=r.data.answers.model_dump(),
            red_flags=[],
            disposition="enrolled",
            created_at=now,
        )
        for r, pid in enrolled
    ]
    triage_ids = _insert_triages(s, triage_values)
    consents = [
        dict(
            patient_id=pid,
            channel=channel,
            action="opt_in",
            source=source,
            text=r.data.consent_text or DEFAULT_CONSENT_TEXT,
            at=now,
        )
        for r, pid in enrolled
        for channel, address in ((Channel.SMS, r.contact.phone), (Channel.EMAIL, r.contact.email))
        if address
    ]
    _append(s, Consent, consents)
    made: dict[tuple[str, str, str], dict[str, Any] | None] = {}
    _append(s, Message, [m for r, pid in enrolled for m in _program(rt, r, pid, now, made)])
    audits = [
        dict(
            at=now,
            actor=actor,
            action="triage.submitted",
            subject=f"patient:{pid}",
            detail={"triage_id": triage_ids[pid], "created": True, "red_flags": [], "source": source},
        )
        for _r, pid in enrolled
    ]
    _append(s, AuditLog, audits)
    return outcomes


def _insert_patients(s: Session, values: list[dict[str, Any]]) -> dict[str, int]:
    """Insert the patients unless their external id is taken (ON CONFLICT DO NOTHING): {external id: new id}. On
    PostgreSQL the rows are COPYed into a temporary table and inserted from it in one statement."""
    table = _table(Patient)
    conn = s.connection()
    if conn.dialect.name != "postgresql":
        stmt = _insert(s, table).on_conflict_do_nothing(index_elements=["external_id"])
        return {str(e): int(i) for i, e in conn.execute(stmt.returning(table.c.id, table.c.external_id), values)}
    names = ", ".join(f'"{n}"' for n in values[0])  # the model's own column names, never input
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS import_patient ON COMMIT DELETE ROWS AS SELECT {names} FROM patient "  # noqa: S608
        "WITH NO DATA"
    )
    _copy(conn, table, "import_patient", values)
    returned = conn.exec_driver_sql(
        f"INSERT INTO patient ({names}) SELECT {names} FROM import_patient "  # noqa: S608
        "ON CONFLICT (external_id) DO NOTHING RETURNING id, external_id"
    )
    return {str(e): int(i) for i, e in returned}


def _insert_triages(s: Session, values: list[dict[str, Any]]) -> dict[int, int]:
    """Insert the triages: {patient id: triage id}. On PostgreSQL the ids are taken from the sequence first and the
    rows COPYed."""
    table = _table(Triage)
    conn = s.connection()
    if conn.dialect.name != "postgresql":
        returned = conn.execute(insert(table).returning(table.c.id, table.c.patient_id), values)
        return {int(p): int(i) for i, p in returned}
    ids = conn.exec_driver_sql(
        "SELECT nextval(pg_get_serial_sequence('triage', 'id')) FROM generate_series(1, %(n)s)", {"n": len(values)}
    ).scalars()
    rows = [{"id": int(i), **v} for i, v in zip(ids, values, strict=True)]
    _append(s, Triage, rows)
    return {r["patient_id"]: r["id"] for r in rows}


def _pg_type(kind: Any, dialect: Any) -> str:
    if isinstance(kind, JSON):
        return "json"
    name = str(kind.compile(dialect=dialect)).lower()
    return "timestamptz" if name.startswith("timestamp") else name


def _append(s: Session, model: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    """Add rows that need no id back, in the session's transaction: COPY on PostgreSQL (a statement per row would
    be parsed and bound per row), one executemany on SQLite."""
    if not rows:
        return
    table = _table(model)
    conn = s.connection()
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), rows)
        return
    _copy(conn, table, table.name, rows)


def _copy(conn: Connection, table: Table, target: str, rows: list[dict[str, Any]]) -> None:
    """COPY the rows (the same keys in each) into `target`, typed as `table`'s columns."""
    given = list(rows[0])
    # COPY applies no Python-side default (a message's status, its attempts): those constants are written out.
    defaults = {
        c.name: c.default.arg  # type: ignore[attr-defined]
        for c in table.columns
        if c.name not in given and c.default is not None and c.default.is_scalar
    }
    names = given + list(defaults)
    rows = [{**r, **defaults} for r in rows] if defaults else rows
    columns = ", ".join(f'"{n}"' for n in names)
    raw = conn.connection.driver_connection
    assert raw is not None
    try:
        with raw.cursor() as cur, cur.copy(f'COPY "{target}" ({columns}) FROM STDIN') as copy:
            # The types given once, not looked up per value; JSON columns take the Python value (dumped once).
            copy.set_types([_pg_type(table.c[n].type, conn.dialect) for n in names])
            for r in rows:
                copy.write_row([r[n] for n in names])
    except conn.dialect.dbapi.IntegrityError as exc:  # type: ignore[union-attr]
        # As SQLAlchemy reports a refused statement: the caller retries the chunk's rows one by one.
        raise IntegrityError(f"COPY {target}", None, exc) from exc


def _patient_values(r: GoodRow, now: datetime) -> dict[str, Any]:
    """The new patient as `submit_triage` leaves them: enrolled now, the contacts the clinic gave confirmed."""
    return new_patient_values(r.data, r.contact.phone, r.contact.email, now) | dict(
        external_id=r.external_id,
        onset_at=now - timedelta(weeks=r.data.answers.onset_weeks),
        enrolled_at=now,
        status=PatientStatus.ACTIVE,
        sms_confirmed_at=now if r.contact.phone else None,  # confirmation.vouch: the clinic entered them
        email_confirmed_at=now if r.contact.email else None,
        sms_state="ok",
        email_state="ok",
    )


def _program(
    rt: Runtime, r: GoodRow, patient_id: int, now: datetime, made: dict[tuple[str, str, str], dict[str, Any] | None]
) -> Iterator[dict[str, Any]]:
    """The program's steps for these answers as message rows, timed as `enrollment.enroll` times them. Every
    patient of a chunk is enrolled at the same instant, so a step's row differs between two patients of the same
    zone and channel only by the patient: `made` keeps it built once (None: a step not sent, its time passed)."""
    prefix = drafts.step_prefix(patient_id, now)
    for step in rt.program.steps_for(r.data.answers.for_program()):
        key = (r.data.timezone, r.data.channel, step.id)
        if key not in made:
            made[key] = _step_row(rt, r.data.timezone, r.data.channel, step, now)
        row = made[key]
        if row is not None:
            yield {**row, "patient_id": patient_id, "dedupe_key": prefix + step.id}


def _step_row(rt: Runtime, timezone: str, channel: str, step: Step, now: datetime) -> dict[str, Any] | None:
    tz = ZoneInfo(timezone)
    window = Window(rt.settings.schedule.send_from, rt.settings.schedule.send_until)
    at = added_step_send(step, now, tz, window, now)
    if at is None:
        return None
    return message_values(rt.settings, drafts.program_step(0, channel, step, now, at), now)


def _write_one(rt: Runtime, row: GoodRow, *, actor: str, source: str) -> Outcome:
    """One row in its own transaction, through the services `POST /api/triage` uses (a red flag escalates)."""
    now = rt.clock.now()
    try:
        with rt.db.session() as s:
            held = _held(s, [row])
            if row.external_id in held.by_external_id:
                return Outcome(row.where, row.external_id, "already", held.by_external_id[row.external_id])
            if bad := held.collision(row):
                audit.record(
                    s, now, actor, "import.contact_already_held", held.subject(row), field=bad.field, row=row.where
                )
                s.commit()
                return _rejected(bad)
            patient = new_patient(row.data, row.contact.phone, row.contact.email, now)
            patient.external_id = row.external_id
            for channel, address in ((Channel.SMS, row.contact.phone), (Channel.EMAIL, row.contact.email)):
                if address:
                    confirmation.vouch(patient, channel, now)
            s.add(patient)
            result = record_triage(
                rt, s, patient, row.data, row.contact, source=source, actor=actor, now=now, created=True
            )
            if not result.escalation_id:
                enroll(rt, s, patient, row.data, now)
            s.commit()
    except IntegrityError as exc:
        with rt.db.session() as s:
            if row.external_id in _held(s, [row]).by_external_id:
                return Outcome(row.where, row.external_id, "already")
        name, message = _refusal(exc)
        return Outcome(row.where, row.external_id, "rejected", field=name, message=message)
    status: Status = "escalated" if result.escalation_id else "enrolled"
    return Outcome(row.where, row.external_id, status, result.patient_id)


def _refusal(exc: IntegrityError) -> tuple[str, str]:
    """The field a refused constraint names, and a message without the values (PostgreSQL's detail carries them)."""
    orig = exc.orig
    diag = getattr(orig, "diag", None)
    name = (getattr(diag, "constraint_name", None) or "") if diag is not None else ""
    text = name or str(orig).split("\n")[0]
    for column in ("phone", "email"):
        if f"patient.{column}" in text or f"patient_{column}" in text:
            return column, HELD
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return "row", f"the database refused the row ({name or primary or text})"
