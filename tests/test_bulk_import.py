"""Bulk enrollment: `followup import FILE` (CSV, NDJSON) and `POST /api/triage/batch`. Bad rows are reported by
line (or index) and field; good rows are enrolled with every program step, as `POST /api/triage` enrolls them; a
rerun enrolls no one twice; a contact another patient holds is reported and that patient is untouched; a row the
database refuses in the middle of a chunk leaves nothing half-written. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import ROOT, T0
from factories import answers, triage_body
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlmodel import func, select

from followup import models as m
from followup.cli.main import cli
from followup.core.bulk import RawRow
from followup.parsing.import_file import read_rows
from followup.runtime import Runtime
from followup.services.bulk_import import Outcome, import_rows
from followup.services.drafts import step_prefix

TABLES = (m.Patient, m.Triage, m.Consent, m.Message, m.AuditLog, m.Escalation)
CSV_ANSWERS = ["onset_weeks", "locations", "weakness", "atrophy", "daily_activities", "speech_swallowing"]
CSV_ANSWERS += ["breathing", "numbness_tingling", "balance", "severe_cramps", "caffeine_per_day", "sleep_hours"]
CSV_ANSWERS += ["stress", "water_glasses", "intense_exercise", "alcohol_per_week"]
HEADER = ["external_id", "name", "phone", "email", "channel", "timezone", "consent", *CSV_ANSWERS]


def row(n: int, **over: Any) -> dict[str, Any]:
    """A valid triage body with the clinic's id MRN-<n> and contacts of its own."""
    contacts = {"phone": f"+1 310 555 {n:04d}", "email": f"p{n}@example.org"}
    return {"external_id": f"MRN-{n}", **triage_body(**{**contacts, **over})}


def csv_line(body: dict[str, Any]) -> list[str]:
    a = body["answers"]
    flat = {**body, **a, "locations": ";".join(a["locations"])}
    cell = {True: "yes", False: "no", None: ""}
    return [cell[v] if v is None or isinstance(v, bool) else str(v) for v in (flat.get(h) for h in HEADER)]


def write_csv(path: Path, bodies: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(csv_line(b) for b in bodies)
    return path


def counts(rt: Runtime) -> dict[str, int]:
    with rt.db.session() as s:
        return {t.__name__: s.exec(select(func.count()).select_from(t)).one() for t in TABLES}


def schedule_of(rt: Runtime, patient_id: int) -> list[tuple[Any, ...]]:
    """A patient's scheduled messages, without what names the patient (id, dedupe key)."""
    with rt.db.session() as s:
        rows = s.exec(select(m.Message).where(m.Message.patient_id == patient_id).order_by(m.Message.step_id)).all()
        return [(x.step_id, x.kind, x.channel, x.template, x.due_at, x.expires_at, x.status) for x in rows]


def run(rt: Runtime, path: Path, chunk: int = 500) -> tuple[list[Outcome], Any]:
    seen: list[Outcome] = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        tally = import_rows(rt, read_rows(path, fh), actor="cli:test", chunk_size=chunk, report=seen.append)
    return seen, tally


def bad_bodies() -> list[dict[str, Any]]:
    return [
        row(1),
        row(2, phone="12345"),  # line 3: not a phone number
        row(3),
        {**row(4), "answers": {k: v for k, v in answers().items() if k != "sleep_hours"}},  # line 5: no answer
        row(5, channel="email"),
    ]


def test_import_csv_enrolls_good_rows_and_reports_bad_ones_by_line_and_field(rt: Runtime, tmp_path: Path) -> None:
    """A CSV with good and bad rows: each bad row is reported by its line and field; each good one is enrolled with
    the very schedule `POST /api/triage` gives the same answers; a rerun enrolls no one twice."""
    path = write_csv(tmp_path / "patients.csv", bad_bodies())
    seen, tally = run(rt, path, chunk=2)
    got = {(o.where, o.status, o.field) for o in seen}
    assert got == {
        (2, "enrolled", None),
        (3, "rejected", "phone"),
        (4, "enrolled", None),
        (5, "rejected", "answers.sleep_hours"),
        (6, "enrolled", None),
    }
    assert (tally.enrolled, tally.already, tally.rejected) == (3, 0, 2)
    by_line = {o.where: o for o in seen}
    assert by_line[3].message == "is not a valid phone number"
    assert by_line[5].message == "Field required"
    with rt.db.session() as s:
        audit_row = s.exec(select(m.AuditLog).where(m.AuditLog.action == "triage.submitted")).first()
        assert audit_row is not None and audit_row.detail["created"] is True and audit_row.detail["red_flags"] == []
        msg = s.exec(select(m.Message)).first()
        assert msg is not None and msg.context == {} and msg.status == "scheduled" and msg.attempts == 0
        p = s.exec(select(m.Patient).where(m.Patient.external_id == "MRN-1")).one()
        assert (p.phone, p.email, p.status) == ("+13105550001", "p1@example.org", "active")
        assert p.sms_confirmed_at is not None and p.email_confirmed_at is not None  # the clinic vouches for them
        assert s.exec(select(func.count()).select_from(m.Consent).where(m.Consent.patient_id == p.id)).one() == 2
    assert p.id is not None
    before = counts(rt)
    seen_again, again = run(rt, path)
    assert (again.enrolled, again.already, again.rejected) == (0, 3, 2)
    assert {o.where for o in seen_again if o.status == "already"} == {2, 4, 6}
    after = counts(rt)
    assert {k: after[k] for k in after if k != "AuditLog"} == {k: before[k] for k in before if k != "AuditLog"}
    assert after["Patient"] == 3 and after["Triage"] == 3


def test_imported_schedule_is_the_api_schedule(client: TestClient, auth: dict, rt: Runtime, tmp_path: Path) -> None:
    """The bulk path's rows (steps, due times, expiry, channel, template) equal what one POST /api/triage writes."""
    api = client.post("/api/triage", json=triage_body(phone="+1 310 555 0900", email=None), headers=auth)
    assert api.status_code == 201
    path = tmp_path / "one.ndjson"
    path.write_text(json.dumps(row(7)) + "\n")
    seen, _ = run(rt, path)
    (imported,) = seen
    assert imported.status == "enrolled" and imported.patient_id is not None
    mine, theirs = schedule_of(rt, imported.patient_id), schedule_of(rt, api.json()["patient_id"])
    assert len(mine) > 10 and mine == theirs
    with rt.db.session() as s:
        keys = s.exec(
            select(m.Message.dedupe_key, m.Message.step_id).where(m.Message.patient_id == imported.patient_id)
        )
        prefix = step_prefix(imported.patient_id, T0)
        assert all(key == prefix + str(step) for key, step in keys)


def test_import_ndjson_reports_bad_lines(rt: Runtime, tmp_path: Path) -> None:
    """NDJSON: a line that is not JSON, one that is not an object and one without external_id are reported by line;
    blank lines are skipped and keep the numbering; the good rows are enrolled."""
    lines = [
        json.dumps(row(1)),
        "",
        "{not json",
        "[1, 2]",
        json.dumps({k: v for k, v in row(2).items() if k != "external_id"}),
    ]
    lines += [json.dumps(row(3, timezone="Mars/Base"))]
    lines += [json.dumps(row(4))]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    seen, tally = run(rt, path)
    assert [(o.where, o.status, o.field) for o in seen] == [
        (1, "enrolled", None),
        (3, "rejected", "row"),
        (4, "rejected", "row"),
        (5, "rejected", "external_id"),
        (6, "rejected", "timezone"),
        (7, "enrolled", None),
    ]
    assert (tally.enrolled, tally.rejected) == (2, 4)
    assert counts(rt)["Patient"] == 2


def test_a_contact_held_by_another_patient_is_reported_and_that_patient_untouched(
    client: TestClient, auth: dict, rt: Runtime, tmp_path: Path
) -> None:
    """A row whose number belongs to a patient enrolled through the API (no such external id) is rejected naming
    `phone`; that patient's name, contacts, consents, triages and schedule stay as they were; the other rows go in."""
    api = client.post("/api/triage", json=triage_body(phone="+1 310 555 0002", email="ana@example.org"), headers=auth)
    pid = api.json()["patient_id"]
    with rt.db.session() as s:
        before = s.get(m.Patient, pid)
    schedule_before, counts_before = schedule_of(rt, pid), counts(rt)
    path = tmp_path / "p.ndjson"
    path.write_text("\n".join(json.dumps(b) for b in (row(1), row(2, name="Mallory"), row(3, email="ANA@example.org"))))
    seen, tally = run(rt, path)
    assert [(o.where, o.status, o.field) for o in seen] == [
        (1, "enrolled", None),
        (2, "rejected", "phone"),
        (3, "rejected", "email"),
    ]
    assert "another patient" in (seen[1].message or "") and str(pid) not in (seen[1].message or "")
    with rt.db.session() as s:
        after = s.get(m.Patient, pid)
        held = s.exec(select(m.AuditLog).where(m.AuditLog.action == "import.contact_already_held")).all()
    assert before is not None and after is not None
    assert after.model_dump() == before.model_dump() and after.external_id is None
    assert schedule_of(rt, pid) == schedule_before
    assert counts(rt)["Triage"] == counts_before["Triage"] + 1 and counts(rt)["Consent"] == counts_before["Consent"] + 2
    assert {h.subject for h in held} == {f"patient:{pid}"} and len(held) == 2
    assert tally.rejected == 2


def test_repeats_inside_one_input_are_rejected(rt: Runtime, tmp_path: Path) -> None:
    """A second row with the same external id, or another id with the same number, is rejected naming the field
    and the row it repeats; the first is enrolled."""
    path = tmp_path / "p.ndjson"
    bodies = [row(1), row(1, name="Again"), {**row(2), "phone": "+1 310 555 0001"}]
    path.write_text("\n".join(json.dumps(b) for b in bodies))
    seen, _ = run(rt, path)
    assert [(o.where, o.status, o.field, o.message) for o in seen] == [
        (1, "enrolled", None, None),
        (2, "rejected", "external_id", "the same as on row 1 of this input"),
        (3, "rejected", "phone", "the same as on row 1 of this input"),
    ]


def _refuse_named(url: str) -> None:
    """A trigger refusing the message rows of the patient named Refused Row, as a constraint would, mid-chunk."""
    engine = create_engine(url)
    with engine.begin() as c:
        if engine.dialect.name == "sqlite":
            c.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON message WHEN (SELECT name FROM patient WHERE id = "
                    "NEW.patient_id) = 'Refused Row' BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"
                )
            )
        else:
            c.execute(
                text(
                    "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF (SELECT name FROM patient "
                    "WHERE id = NEW.patient_id) = 'Refused Row' THEN RAISE EXCEPTION 'refused by test trigger' USING "
                    "ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            c.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON message FOR EACH ROW EXECUTE FUNCTION refuse()"))
    engine.dispose()


def _drop_trigger(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("DROP TRIGGER refuse" + (" ON message" if engine.dialect.name == "postgresql" else "")))
    engine.dispose()


def test_a_row_the_database_refuses_mid_chunk_leaves_nothing_half_written(rt: Runtime, tmp_path: Path) -> None:
    """The database refuses the third row's program steps (a constraint, as a trigger here) in the middle of a
    chunk: that row is reported and has no patient, triage, consent or message; the others are enrolled whole."""
    url = rt.settings.database.url
    _refuse_named(url)
    try:
        path = tmp_path / "p.ndjson"
        bodies = [row(1), row(2), row(3, name="Refused Row"), row(4), row(5)]
        path.write_text("\n".join(json.dumps(b) for b in bodies))
        seen, _ = run(rt, path)
    finally:
        _drop_trigger(url)
    assert [(o.where, o.status) for o in seen] == [(n, "enrolled") for n in (1, 2)] + [(3, "rejected")] + [
        (n, "enrolled") for n in (4, 5)
    ]
    assert seen[2].field == "row" and "refused by test trigger" in (seen[2].message or "")
    with rt.db.session() as s:
        assert s.exec(select(m.Patient).where(m.Patient.external_id == "MRN-3")).first() is None
        pids = s.exec(select(m.Patient.id)).all()
    c = counts(rt)
    assert (c["Patient"], c["Triage"], c["Consent"]) == (4, 4, 8)
    steps = [len(schedule_of(rt, pid)) for pid in pids if pid is not None]
    assert len(set(steps)) == 1 and c["Message"] == 4 * steps[0]
    _, again = run(rt, path)  # the trigger gone, the refused row goes in and the others are already there
    assert (again.enrolled, again.already) == (1, 4)


def test_a_red_flag_row_escalates_as_the_api_does(rt: Runtime, tmp_path: Path) -> None:
    """A row whose answers raise a red flag is triaged on its own: escalated, the on-call alerted, no program."""
    path = tmp_path / "p.ndjson"
    path.write_text("\n".join(json.dumps(b) for b in (row(1), row(2, answers={"weakness": True}))))
    seen, _ = run(rt, path)
    assert [(o.where, o.status) for o in seen] == [(1, "enrolled"), (2, "escalated")]
    assert counts(rt)["Escalation"] == 1 and schedule_of(rt, seen[1].patient_id or 0) != []
    assert {x[1] for x in schedule_of(rt, seen[1].patient_id or 0)} == {"escalation"}
    _, again = run(rt, path)
    assert (again.already, counts(rt)["Escalation"]) == (2, 1)


def test_batch_api_reports_by_index_and_is_idempotent(client: TestClient, auth: dict, rt: Runtime) -> None:
    """POST /api/triage/batch: the same checks by list index, a token required, a second call enrolls no one."""
    body = [row(1), row(2, phone="12345"), "nope", row(3)]
    assert client.post("/api/triage/batch", json=body).status_code == 401
    r = client.post("/api/triage/batch", json=body, headers=auth)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["enrolled"], got["already"], got["rejected"]) == (2, 0, 2)
    assert [(x["index"], x["status"], x["field"]) for x in got["rows"]] == [
        (0, "enrolled", None),
        (1, "rejected", "phone"),
        (2, "rejected", "row"),
        (3, "enrolled", None),
    ]
    again = client.post("/api/triage/batch", json=body, headers=auth).json()
    assert (again["enrolled"], again["already"], again["rejected"]) == (0, 2, 2)
    assert [x["patient_id"] for x in again["rows"] if x["status"] == "already"] == [
        x["patient_id"] for x in got["rows"] if x["status"] == "enrolled"
    ]
    assert counts(rt)["Patient"] == 2
    assert client.post("/api/triage/batch", json=[], headers=auth).status_code == 422


def test_cli_import_prints_rejects_and_a_summary(rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`followup import` prints each rejected row (line, field; no contact details), then the summary; exit 1 when
    a row was rejected; a file with an unknown column is refused whole, naming it."""
    monkeypatch.chdir(ROOT)
    env = {
        "FOLLOWUP_DATABASE__URL": rt.settings.database.url,
        "FOLLOWUP_SECURITY__SECRET_KEY": rt.settings.security.secret_key,
    }
    path = write_csv(tmp_path / "p.csv", bad_bodies())
    runner = CliRunner()
    out = runner.invoke(cli, ["import", str(path)], env=env, obj={})
    assert out.exit_code == 1, out.output
    assert "line 3 (MRN-2): phone: is not a valid phone number" in out.stderr
    assert "line 5 (MRN-4): answers.sleep_hours: Field required" in out.stderr
    assert "12345" not in out.output and "example.org" not in out.output
    assert out.stdout.strip().splitlines()[-1].startswith("enrolled 3, escalated 0, already 0, rejected 2")
    again = runner.invoke(cli, ["import", str(path)], env=env, obj={})
    assert again.stdout.strip().splitlines()[-1].startswith("enrolled 0, escalated 0, already 3, rejected 2")
    odd = tmp_path / "odd.csv"
    odd.write_text("external_id,name,shoe_size\nX,Ana,42\n")
    refused = runner.invoke(cli, ["import", str(odd)], env=env, obj={})
    assert refused.exit_code == 1 and "unknown column(s) 'shoe_size'" in refused.output


def test_csv_quoted_newline_keeps_line_numbers() -> None:
    """A quoted cell spanning two lines counts both, so the next row's reported line is the file's own."""
    text_ = 'external_id,name\nA,"Ana\nDiaz"\nB,Bo\n'
    rows = list(read_rows(Path("x.csv"), io.StringIO(text_)))
    assert [(r.where, (r.fields or {}).get("external_id")) for r in rows] == [(2, "A"), (4, "B")]
    assert isinstance(rows[0], RawRow)


def test_readme_example_file_imports_as_the_readme_says(rt: Runtime) -> None:
    """docs/example-import.csv: two patients enrolled, line 3 rejected for its phone, as the README shows."""
    seen, tally = run(rt, ROOT / "docs/example-import.csv")
    assert [(o.where, o.status, o.field) for o in seen] == [
        (2, "enrolled", None),
        (3, "rejected", "phone"),
        (4, "enrolled", None),
    ]
    assert (tally.enrolled, tally.already, tally.rejected) == (2, 0, 1)
