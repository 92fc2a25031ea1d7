"""Several `followup worker` processes on one PostgreSQL database, sending through the fake provider.

Each test gets its own database (created and dropped here) and counts what the fake provider accepted: every
message exactly once, whatever happens to the workers or to their database connections.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PG_REQUIRED, PG_URL, ROOT
from factories import seed_due_messages
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from followup.db import upgrade
from followup.fakeprovider import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN, FakeProvider, Faults

pytestmark = pytest.mark.postgres
FROM = "+15005550006"
STARTUP_S = 120
DEADLINE_S = 150  # a guard against hanging, never a performance expectation


def _admin_url() -> str:
    return make_url(PG_URL).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated database of this test's own, dropped afterwards."""
    if not PG_URL:
        if PG_REQUIRED:
            pytest.fail("FOLLOWUP_TEST_POSTGRES_REQUIRED=1 but FOLLOWUP_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL not configured: set FOLLOWUP_TEST_POSTGRES_URL (as .ci/run does)")
    admin = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    name = f"followup_workers_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        if PG_REQUIRED:
            pytest.fail(f"PostgreSQL required but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    url = make_url(_admin_url()).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
            c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"), {"d": name})
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    # Status callbacks are held back an hour (so, never posted): these tests count sends, not deliveries.
    fp = FakeProvider(status_delay_s=3600.0).start()
    yield fp
    fp.stop()


class Workers:
    """`followup worker` processes started from the repository root with settings from the environment."""

    def __init__(self, url: str, provider: FakeProvider, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "FOLLOWUP_DATABASE__URL": url,
            "FOLLOWUP_TWILIO__ACCOUNT_SID": DEV_TWILIO_ACCOUNT_SID,
            "FOLLOWUP_TWILIO__AUTH_TOKEN": DEV_TWILIO_AUTH_TOKEN,
            "FOLLOWUP_TWILIO__FROM_NUMBER": FROM,
            "FOLLOWUP_TWILIO__API_BASE": provider.url,
            # Sends start only while the lease outlives the whole provider call (twice its timeout and a settle time):
            # 8 s of lease leaves 3 s to start sends in (settings.send_in_flight_seconds).
            "FOLLOWUP_TWILIO__TIMEOUT_SECONDS": "2",
            "FOLLOWUP_SENDGRID__TIMEOUT_SECONDS": "2",
            "FOLLOWUP_SENDGRID__API_KEY": "",
            "FOLLOWUP_CLINIC__ONCALL_SMS": '["+13105550199"]',  # required with a real provider
            "FOLLOWUP_DISPATCH__INTERVAL_SECONDS": "0.2",
            "FOLLOWUP_DISPATCH__BATCH_SIZE": "200",
            "FOLLOWUP_DISPATCH__LEASE_SECONDS": "8",
            "FOLLOWUP_DISPATCH__CONCURRENCY": "8",
            "FOLLOWUP_DISPATCH__PER_SENDER_PER_SECOND": "100000",
            "FOLLOWUP_DISPATCH__BACKOFF_BASE_SECONDS": "0.5",
            "FOLLOWUP_SECURITY__SECRET_KEY": "workers-test-" + "k" * 40,
        }

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker-{len(self.procs)}.log").open("wb")
        cmd = [
            sys.executable,
            "-m",
            "followup.cli",
            "--settings",
            str(self.logs / "none.toml"),
            "worker",
            "--no-migrate",
        ]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        log.close()
        self.procs.append(proc)
        return proc

    def owner(self, n: int) -> str:
        """The lease owner a worker announced on its first line."""
        deadline = time.monotonic() + STARTUP_S  # a loaded machine starts a worker slowly: a wait, not a timing claim
        while time.monotonic() < deadline:
            for line in (self.logs / f"worker-{n}.log").read_text(errors="replace").splitlines():
                if line.startswith("worker ") and " dispatching" in line:
                    return line.split()[1]
            time.sleep(0.05)
        raise AssertionError(f"worker {n} never started:\n{self.log(n)}")

    def log(self, n: int, tail: int = 3000) -> str:
        return (self.logs / f"worker-{n}.log").read_text(errors="replace")[-tail:]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def workers(pg_url: str, provider: FakeProvider, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(pg_url, provider, tmp_path)
    yield w
    w.stop()


def db_scalar(url: str, sql: str, **params: Any) -> Any:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as c:
            return c.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def wait_until(check: Callable[[], bool], what: str, workers: Workers) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"gave up waiting for {what}; last worker log:\n{workers.log(len(workers.procs) - 1)}")


def sent_count(url: str) -> int:
    return int(db_scalar(url, "SELECT count(*) FROM message WHERE status = 'sent'"))


def story(url: str, ids: list[int]) -> list[Any]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as c:
            rows = c.execute(
                text(
                    "SELECT id, status, attempts, reason, send_started_at, sent_at, updated_at FROM message "
                    "WHERE id = ANY(:ids)"
                ),
                {"ids": ids},
            ).all()
            return [tuple(r) for r in rows]
    finally:
        engine.dispose()


def assert_each_sent_once(url: str, provider: FakeProvider, n: int) -> None:
    at_provider = Counter(m["message_id"] for m in provider.messages())
    twice = sorted(int(mid) for mid, k in at_provider.items() if k > 1)
    copies = [(x["message_id"], x["received_at"]) for x in provider.messages() if int(x["message_id"]) in twice[:3]]
    assert not twice, f"sent more than once: {twice[:10]}; their story: {story(url, twice[:3])}; copies: {copies}"
    assert len(at_provider) == n, f"the provider has {len(at_provider)} of {n} messages"
    assert sent_count(url) == n
    open_rows = db_scalar(url, "SELECT count(*) FROM message WHERE status IN ('scheduled', 'claimed', 'sending')")
    assert open_rows == 0


def test_three_workers_send_twenty_thousand_messages_exactly_once(
    pg_url: str, provider: FakeProvider, workers: Workers
) -> None:
    """Three workers share 20,000 due messages through SKIP LOCKED claims: each reaches the provider once."""
    n = 20_000
    seed_due_messages(pg_url, n)
    for _ in range(3):
        workers.start()
    wait_until(lambda: sent_count(pg_url) == n, f"{n} messages sent", workers)
    assert_each_sent_once(pg_url, provider, n)
    assert db_scalar(pg_url, "SELECT max(attempts) FROM message") == 1  # nothing needed a second try


def test_worker_killed_mid_batch_then_restarted_loses_and_repeats_nothing(
    pg_url: str, provider: FakeProvider, workers: Workers
) -> None:
    """SIGKILL a worker while it holds leased messages; after a restart every message is sent exactly once."""
    n = 4000
    provider.set_faults(Faults(latency_ms=20))  # each batch spends most of its time sending: a kill lands mid-batch
    workers.env["FOLLOWUP_DISPATCH__BATCH_SIZE"] = "50"  # fewer interrupted messages to look up at the fake
    seed_due_messages(pg_url, n)
    victim = workers.start()
    workers.start()
    owner = workers.owner(0)
    wait_until(lambda: len(provider.messages()) >= n // 4, "a quarter of the messages sent", workers)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    held = db_scalar(
        pg_url,
        "SELECT count(*) FROM message WHERE lease_owner = :o AND status IN ('claimed', 'sending')",
        o=owner,
    )
    assert held > 0, "the worker was killed between batches; the test needs it mid-batch"
    workers.start()  # the restart
    wait_until(lambda: sent_count(pg_url) == n, f"{n} messages sent", workers)
    assert_each_sent_once(pg_url, provider, n)
    reconciled = db_scalar(
        pg_url,
        "SELECT count(*) FROM message WHERE reason LIKE '%interrupted send%' OR reason LIKE '%worker that stopped%'",
    )
    assert reconciled > 0


def test_workers_ride_out_a_database_outage(pg_url: str, provider: FakeProvider, workers: Workers) -> None:
    """Twice, the database refuses connections for 3 s and drops the workers' sessions; they carry on unaided."""
    n = 4000
    provider.set_faults(Faults(latency_ms=10))
    workers.env["FOLLOWUP_DISPATCH__BATCH_SIZE"] = "50"  # fewer interrupted messages to look up at the fake
    seed_due_messages(pg_url, n)
    procs = [workers.start(), workers.start()]
    name = make_url(pg_url).database
    admin = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        for fraction in (4, 2):
            target = n // fraction

            def reached(target: int = target) -> bool:
                return len(provider.messages()) >= target

            wait_until(reached, f"1/{fraction} sent", workers)
            with admin.connect() as c:
                c.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
                dropped = c.execute(
                    text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :d"),
                    {"d": name},
                ).scalar()
                assert dropped, "the workers had no open connection to drop"
                time.sleep(3)
                c.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
    finally:
        admin.dispose()
    wait_until(lambda: sent_count(pg_url) == n, f"{n} messages sent", workers)
    assert all(p.poll() is None for p in procs), "a worker died instead of recovering"
    assert_each_sent_once(pg_url, provider, n)
    assert "pass failed" in "".join(workers.log(i, tail=10**7) for i in range(len(procs)))  # they did notice
