"""SQLite plans the hot statements on the selective index once the planner-statistics job has run: the dispatcher's
claim takes the due messages by key, and a patient's scheduled messages are found by patient, not by walking every
scheduled message of the clinic. (How fast: bench/, never asserted here.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlmodel import col

from followup import models as m
from followup.core.vocab import MessageState
from followup.db import Database, upgrade
from followup.jobs import DispatchLoop
from followup.services.dispatch import _claim_statement

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
PATIENTS, STEPS = 300, 19


def _filled(tmp_path: Path) -> Database:
    """A clinic of 300 patients, each with 19 steps: most scheduled, some sent."""
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
                    "kind": "tip",
                    "template": "tip",
                    "context": {},
                    "urgent": False,
                    "status": MessageState.SENT if k < 3 else MessageState.SCHEDULED,
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
