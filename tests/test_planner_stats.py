"""SQLite plans the hot statements on the selective index once the planner-statistics job has run: the dispatcher's
claim takes the due messages by key, and a patient's scheduled messages are found by patient, not by walking every
scheduled message of the clinic; the overview job's reads take the check-ins' index. (How fast: bench/, never
asserted here.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, insert, select
from sqlmodel import col

from followup import models as m
from followup.core.vocab import MessageState
from followup.db import Database, upgrade
from followup.jobs import DispatchLoop
from followup.services import rollup
from followup.services.dispatch import _claim_statement

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
PATIENTS, STEPS = 300, 19


def _filled(tmp_path: Path, checkins: bool = False) -> Database:
    """A clinic of 300 patients, each with 19 steps: most scheduled, some sent (with `checkins`, one of the sent ones
    a check-in, and a reply from every tenth patient after it)."""
    url = f"sqlite:///{tmp_path / 'stats.db'}"
    upgrade(url)
    db = Database(url)
    with db.session() as s:
        s.execute(
            insert(m.Patient),
            [
                {
                    "name": f"P{i}",
                    "phone": f"+1555{i:07d}",
                    "channel": "sms",
                    "timezone": "UTC",
                    "status": "active",
                    "reply_token": f"t{i}",
                    "enrolled_at": NOW,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for i in range(PATIENTS)
            ],
        )
        ids = s.scalars(select(col(m.Patient.id))).all()
        s.execute(
            insert(m.Message),
            [
                {
                    "patient_id": pid,
                    "dedupe_key": f"step:{pid}:{k}",
                    "channel": "sms",
                    "template": "tip",
                    "context": {},
                    "urgent": False,
                    "status": MessageState.SENT if k < 3 else MessageState.SCHEDULED,
                    "kind": "checkin" if checkins and k == 1 else "tip",
                    "sent_at": NOW - timedelta(hours=30 - k) if k < 3 else None,
                    "due_at": NOW + timedelta(days=k),
                    "expires_at": NOW + timedelta(days=k + 1),
                    "attempts": 0,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for pid in ids
                for k in range(STEPS)
            ],
        )
        if checkins:
            s.execute(
                insert(m.Inbound),
                [
                    {
                        "provider_key": f"twilio:SM{pid}",
                        "channel": "sms",
                        "patient_id": pid,
                        "sender": f"+1555{pid:07d}",
                        "body": "2",
                        "meta": {},
                        "verdict": {},
                        "status": "processed",
                        "level": "none",
                        "received_at": NOW - timedelta(minutes=5),
                    }
                    for pid in ids[::10]
                ],
            )
        s.commit()
    return db


def _plan(db: Database, stmt: Any, params: dict[str, Any]) -> str:
    compiled = stmt.compile(dialect=db.engine.dialect)
    bound = compiled.construct_params(params)
    positional = tuple(bound[name] for name in compiled.positiontup)
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), positional).all()
    return " | ".join(str(r[3]) for r in rows)


CLAIM = {"b_now": NOW, "b_limit": 50, "b_owner": "w", "b_lease": NOW + timedelta(minutes=5)}
SCHEDULED_OF = select(col(m.Message.id)).where(
    col(m.Message.patient_id) == 7, col(m.Message.status) == MessageState.SCHEDULED
)


@pytest.mark.parametrize(
    ("what", "stmt", "params", "wanted"),
    [
        ("the claim's update", _claim_statement(False, False), CLAIM, "INTEGER PRIMARY KEY"),
        ("a patient's scheduled messages", SCHEDULED_OF, {}, "ix_message_patient_id"),
    ],
)
def test_statistics_make_sqlite_use_the_selective_index(
    tmp_path: Path, what: str, stmt: Any, params: dict[str, Any], wanted: str
) -> None:
    """Without statistics SQLite walks the status index for these; after `refresh_planner_stats` it takes the key."""
    db = _filled(tmp_path)
    before = _plan(db, stmt, params)
    assert db.refresh_planner_stats() is True
    after = _plan(db, stmt, params)
    assert "ix_message_status_channel" in before, f"{what}: {before}"  # the plan this job exists to change
    assert wanted in after and "ix_message_status_channel" not in after, f"{what}: {after}"
    db.dispose()


def test_the_service_takes_statistics_every_hour(rt: Any) -> None:
    """The scheduler runs the planner-statistics job hourly (SQLite samples its indexes; PostgreSQL has autovacuum)."""
    loop = DispatchLoop(rt)
    try:
        job = loop.scheduler.get_job("planner-stats")
        assert job is not None and job.trigger.interval == timedelta(hours=1)
        assert job.func() is None  # guarded: runs, never raises
        assert rt.db.refresh_planner_stats() is (rt.db.engine.dialect.name == "sqlite")
    finally:
        loop.dispatcher.close()


# `sqlite_stat1` of message's indexes in a 100,000 x 30 simulation at virtual hour 390 (analysis_limit=2000): the
# check-ins' partial index guessed at 1.4 M rows, a state at 1,001.
SIMULATION_STATS = {
    "ix_message_checkin_sent": "1427252 267",
    "ix_message_status_channel": "2112960 1001 667",
    "ix_message_due": "1195560 1001 7",
    "ix_message_patient_id": "2263200 31",
    "ix_message_failed": "3090 4",
    "ix_message_urgent_due": "11 2",
    "ix_message_unpurged": "820800 667",
    "ix_message_clinic": "16 16 1",
    "ix_message_provider_id": "5859000 2",
    "ix_message_escalation_id": "1691339 7",
    "sqlite_autoindex_message_1": "1829700 1",
}


def test_the_overview_reads_of_messages_take_the_check_ins_index(tmp_path: Path) -> None:
    """With the statistics of a big clinic, every read of check-ins the overview job's rebuild and carry-forward make
    is a range of the check-ins' sent_at index (or a few patients'): with `status IN` in those statements SQLite
    walked every sent message by state (a seventh of a 100,000-patient simulation, bench/README.md)."""
    db = _filled(tmp_path, checkins=True)
    assert db.refresh_planner_stats() is True
    with db.engine.begin() as conn:  # the sampled statistics a 100,000-patient simulation had at day 16
        for index, stat in SIMULATION_STATS.items():
            conn.exec_driver_sql("UPDATE sqlite_stat1 SET stat = ? WHERE idx = ?", (stat, index))
    db.engine.dispose()  # new connections load them
    reads: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "message.kind = 'checkin'" in statement:
            reads.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    tz = ZoneInfo("UTC")
    with db.session() as s:
        rollup.compute_days(s, [(NOW - timedelta(days=d)).date() for d in range(3)], tz, NOW, upto=NOW)
        rollup.since_snapshot(s, tz, NOW - timedelta(minutes=10), NOW)
    event.remove(db.engine, "before_cursor_execute", keep)
    assert len(reads) >= 4  # the rebuild's check-ins; the carry-forward's two ranges and its answered check-ins
    with db.engine.connect() as conn:
        plans = [
            " | ".join(str(r[3]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all())
            for sql, params in reads
        ]
    for (sql, _), plan in zip(reads, plans, strict=True):
        assert "ix_message_checkin_sent" in plan or "ix_message_patient_id" in plan, f"{sql}\n-> {plan}"
    db.dispose()
