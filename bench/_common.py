"""Helpers the benchmarks share: throwaway databases, a fake provider in its own process, seeded due messages.

Benchmarks measure; they assert nothing. Each prints one JSON line, last.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # for factories: an installed package already claims the name `tests`

import factories  # noqa: E402

from followup.db import upgrade  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FROM_NUMBER = "+15005550006"


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    """A migrated, empty database: `sqlite` (a temporary file) or `postgres` (a new database on the server named
    by FOLLOWUP_BENCH_POSTGRES_URL or FOLLOWUP_TEST_POSTGRES_URL, dropped afterwards)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="followup-bench-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            upgrade(url)
            yield url
        return
    base = os.environ.get("FOLLOWUP_BENCH_POSTGRES_URL") or os.environ.get("FOLLOWUP_TEST_POSTGRES_URL") or PG_DEFAULT
    admin_url = make_url(base).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    name = f"followup_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"), {"d": name})
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@contextlib.contextmanager
def fake_provider(latency_ms: int = 0) -> Iterator[str]:
    """The fake Twilio/SendGrid in its own process (so it does not share our GIL); yields its URL. Status
    callbacks are held back an hour, i.e. never posted: the dispatch benchmark measures sending."""
    cmd = [
        sys.executable,
        "-m",
        "followup.fakeprovider",
        "--port",
        "0",
        "--events-url",
        "",
        "--latency-ms",
        str(latency_ms),
        "--status-delay",
        "3600",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603 - our own module
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().rsplit(" ", 1)[-1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


phone = factories.phone  # the seeded patients' numbers


def seed_due_messages(url: str, n: int, *, start: int = 0, urgent: bool = True) -> None:
    """`n` patients with one message each, due a minute ago (urgent: the wall clock's hour does not matter)."""
    factories.seed_due_messages(url, n, key="bench", start=start, urgent=urgent)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def emit(result: dict[str, Any]) -> None:
    """The benchmark's one JSON line, last on stdout."""
    print(json.dumps(result), flush=True)
