"""Database: the engine, sessions, and migrations (Alembic, applied by `followup db upgrade` and at start)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, SQLModel, create_engine

from followup.files import create_private

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"


SQLITE_ANALYSIS_LIMIT = 2000  # rows sampled per index by ANALYZE (SQLite's `PRAGMA optimize` uses about 400)


def make_engine(url: str, **kw: Any) -> Engine:
    """An engine tuned for the service: SQLite in WAL mode with a busy timeout, PostgreSQL with a pool."""
    u = make_url(url)
    kw.setdefault("hide_parameters", True)  # a logged SQL error must not carry patients' numbers or messages
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            create_private(Path(u.database))  # 0600: the database is the health record
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kw)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 20)
    return create_engine(url, pool_pre_ping=True, **kw)


class Database:
    """Owns the engine; `session()` is the only way code gets a session."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    def dispose(self) -> None:
        self.engine.dispose()

    def refresh_planner_stats(self) -> bool:
        """SQLite: sample each index again (`ANALYZE` under `analysis_limit`, milliseconds at any size) so the
        planner can tell a selective index from a status column. Without statistics it guessed that `status = ?`
        was the narrowest lookup: the dispatcher's claim and the cancellation of a patient's program walked every
        scheduled message of the clinic (a quarter of a 100,000-patient simulation's time in its first days).
        PostgreSQL's autovacuum keeps its own statistics: nothing to do there. True if statistics were taken."""
        if self.is_postgres:
            return False
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"PRAGMA analysis_limit={SQLITE_ANALYSIS_LIMIT}")
            conn.exec_driver_sql("ANALYZE")
        return True


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # The service has set up its logging (level, redaction); alembic.ini's would replace it for the whole process.
    cfg.attributes["skip_logging"] = True
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision`."""
    make_engine(url).dispose()  # creates the SQLite folder if needed
    command.upgrade(alembic_config(url), revision)


@cache
def insert_new(dialect: str, table: str, key: str) -> Any:
    """INSERT into `table` ... ON CONFLICT (`key`) DO NOTHING RETURNING id, for `dialect`, built once: an idempotent
    store (a provider's event or a reply, keyed by the provider's id) whose columns come from the rows it runs with.
    RETURNING, not rowcount: psycopg reports -1 for this statement, which would count a duplicate as new."""
    t = SQLModel.metadata.tables[table]
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(t)
    return ins.on_conflict_do_nothing(index_elements=[key]).returning(t.c.id)
