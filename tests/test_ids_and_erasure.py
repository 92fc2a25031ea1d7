"""Ids are never reused and erasure leaves no health data behind (issue 11, findings 4 and 14). SQLite and
PostgreSQL; file modes on the files the service creates."""

from __future__ import annotations

import ast
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from factories import triage_body
from fastapi.testclient import TestClient
from sqlmodel import select

from followup import models as m
from followup.cli.main import cli
from followup.db import upgrade
from followup.runtime import Runtime
from followup.services import booking, privacy
from followup.transports.base import Outgoing
from followup.transports.outbox import Outbox

ROOT = Path(__file__).resolve().parent.parent


def escalate(client: TestClient, auth: dict[str, str], phone: str, name: str) -> tuple[int, int]:
    r = client.post(
        "/api/triage", json=triage_body(name=name, phone=phone, email=None, answers={"weakness": True}), headers=auth
    )
    assert r.status_code == 201, r.text
    return int(r.json()["patient_id"]), int(r.json()["escalation_id"])


def test_an_erased_patients_booking_link_never_opens_another_escalation(
    client: TestClient, auth: dict[str, str], rt: Runtime
) -> None:
    """The issue's reuse: erase a patient, escalate another; the new escalation gets a new id (AUTOINCREMENT on
    SQLite, a sequence on PostgreSQL) and the old link opens nothing, not even with the old id reused."""
    pid, eid = escalate(client, auth, "+13105550142", "Ana Diaz")
    old_link = booking.link(rt, eid).removeprefix(rt.settings.server.public_url)
    assert client.get(old_link).status_code == 200
    privacy.erase_patient(rt, pid, "test")
    _, new_eid = escalate(client, auth, "+13105550143", "Bo Chen")
    assert new_eid > eid
    page = client.get(old_link)
    assert page.status_code == 404 and "Bo" not in page.text
    with rt.db.session() as s:
        new = s.get(m.Escalation, new_eid)
        assert new is not None
    forged = rt.links.booking(new_eid, "0" * 16).removeprefix(rt.settings.server.public_url)
    assert client.get(forged).status_code == 404  # a token signed for the id but another nonce
    assert client.get(booking.link(rt, new_eid).removeprefix(rt.settings.server.public_url)).status_code == 200


def test_erase_removes_health_details_from_the_audit_log(client: TestClient, auth: dict[str, str], rt: Runtime) -> None:
    """After erase, the audit rows about the patient keep action, actor and time but no criteria, tiers or times;
    the erasure itself is recorded with counts only; other patients' rows keep their details."""
    pid, eid = escalate(client, auth, "+13105550142", "Ana Diaz")
    other, other_eid = escalate(client, auth, "+13105550143", "Bo Chen")
    with rt.db.session() as s:
        about = [a for a in s.exec(select(m.AuditLog)) if a.subject in (f"patient:{pid}", f"escalation:{eid}")]
    assert any("weakness" in json.dumps(a.detail) for a in about)
    privacy.erase_patient(rt, pid, "dpo")
    with rt.db.session() as s:
        rows = list(s.exec(select(m.AuditLog)))
    erased = [a for a in rows if a.subject in (f"patient:{pid}", f"escalation:{eid}") and a.action != "patient.erased"]
    assert erased and all(a.detail == {"erased": True} for a in erased)
    assert {(a.action, a.actor) for a in erased} == {(a.action, a.actor) for a in about}
    assert any(a.detail.get("patient_id") == pid for a in about)  # escalation.opened names them in its detail
    assert not [a for a in rows if a.detail.get("patient_id") == pid]  # found by subject alone, as the export
    (done,) = [a for a in rows if a.action == "patient.erased"]
    assert set(done.detail) == {"deleted"} and all(isinstance(v, int) for v in done.detail["deleted"].values())
    kept = [a for a in rows if a.subject == f"escalation:{other_eid}"]
    assert kept and any("weakness" in json.dumps(a.detail) for a in kept)
    assert other


def test_audit_rows_naming_a_patient_in_detail_have_one_of_their_rows_as_subject() -> None:
    """Export and erase find a patient's audit rows by subject alone (an OR on the JSON detail read the whole audit
    log): every audit call that puts patient_id in its detail names an escalation or the patient as its subject."""
    calls = []
    for path in (ROOT / "followup").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("record", "note")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "audit"
                and any(k.arg == "patient_id" for k in node.keywords)
            ):
                subject = node.args[4 if node.func.attr == "record" else 3]
                calls.append((f"{path.name}:{node.lineno}", ast.unparse(subject)))
    assert calls
    assert [c for c in calls if not c[1].startswith(("f'escalation:", "f'patient:"))] == []


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_outbox_and_exports_are_created_0600(
    tmp_path: Path, rt: Runtime, client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new SQLite database, the outbox files and `patient export --out` are readable by the service user only,
    whatever the umask."""
    import os

    old = os.umask(0o022)
    try:
        db = tmp_path / "fresh" / "followup.db"
        upgrade(f"sqlite:///{db}")
        outbox = Outbox("sms", tmp_path / "outbox" / "sms.jsonl")
        outbox.send(Outgoing(message_id=1, channel="sms", to="+13105550142", body="hello"))
        pid, _ = escalate(client, auth, "+13105550142", "Ana Diaz")
        monkeypatch.chdir(ROOT)
        env = {
            "FOLLOWUP_DATABASE__URL": rt.settings.database.url,
            "FOLLOWUP_SECURITY__SECRET_KEY": rt.settings.security.secret_key,
        }
        out = tmp_path / "export.json"
        r: Any = CliRunner().invoke(cli, ["patient", "export", str(pid), "--out", str(out)], env=env, obj={})
        assert r.exit_code == 0, r.output
    finally:
        os.umask(old)
    assert json.loads(out.read_text())["patient"]["id"] == pid
    assert (mode(db), mode(outbox.path), mode(out)) == (0o600, 0o600, 0o600)
