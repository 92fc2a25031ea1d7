"""Shared fixtures: real SQLite and real PostgreSQL, a fake clock, recording transports, an API client.

Integration tests take the `db_url` fixture, which runs them once per database. PostgreSQL comes from
FOLLOWUP_TEST_POSTGRES_URL; without it those runs skip with a reason, unless FOLLOWUP_TEST_POSTGRES_REQUIRED=1
(as in .ci/run), where an unreachable server fails the run.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from followup.clock import FakeClock
from followup.db import upgrade
from followup.runtime import Runtime, build_runtime
from followup.settings import Settings
from followup.transports.recording import RecordingTransport
from followup.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("FOLLOWUP_TEST_POSTGRES_URL", "")
PG_REQUIRED = os.environ.get("FOLLOWUP_TEST_POSTGRES_REQUIRED") == "1"
# Wednesday 2026-11-25 18:00 UTC = 10:00 in Los Angeles: inside the default sending window.
T0 = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def _pg_admin_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    if not PG_URL:
        if PG_REQUIRED:
            pytest.fail("FOLLOWUP_TEST_POSTGRES_REQUIRED=1 but FOLLOWUP_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL not configured: set FOLLOWUP_TEST_POSTGRES_URL (as .ci/run does)")
    admin = create_engine(_pg_admin_url(PG_URL), isolation_level="AUTOCOMMIT")
    name = f"followup_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        if PG_REQUIRED:
            pytest.fail(f"PostgreSQL required but unreachable at {make_url(PG_URL).host}: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    url = make_url(_pg_admin_url(PG_URL)).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as c:
        c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a fresh SQLite file, or the session's PostgreSQL database truncated."""
    if request.param == "sqlite":
        path = tmp_path / "followup.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("pg_database")
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as c:
        c.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    yield url


def make_settings(db_url: str, **sections: dict) -> Settings:
    base = Settings().with_overrides(
        database={"url": db_url},
        clinic={
            "program": ROOT / "clinic/program.toml",
            "red_flags": ROOT / "clinic/red_flags.toml",
            "intake_rules": ROOT / "clinic/intake.toml",
            "keywords": ROOT / "clinic/keywords.toml",
            "templates": ROOT / "templates",
            "oncall_sms": ["+13105550199"],
            "oncall_email": ["oncall@clinic.example"],
        },
        security={"secret_key": "test-secret-key-" + "x" * 32},
        dispatch={"per_sender_per_second": 1000.0},
    )
    return base.with_overrides(**sections) if sections else base


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def transports() -> dict[str, RecordingTransport]:
    return {
        "sms": RecordingTransport("sms", "+13105550100"),
        "email": RecordingTransport("email", "f@clinic.example"),
    }


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture
def rt(settings: Settings, clock: FakeClock, transports: dict[str, RecordingTransport]) -> Iterator[Runtime]:
    runtime = build_runtime(settings, clock=clock, transports=dict(transports))
    yield runtime
    runtime.db.dispose()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    # From loopback, as the outbox demo's own signed posts are: the published development Twilio token is accepted
    # from nowhere else (issue 11, finding 10; tests/test_reply_auth.py posts from elsewhere).
    with TestClient(create_app(runtime=rt, background=False), client=("127.0.0.1", 50000)) as c:
        yield c


@pytest.fixture
def token(rt: Runtime) -> str:
    from followup.services.tokens import create_token

    return create_token(rt, "tests")[1]


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
