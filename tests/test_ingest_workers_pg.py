"""Replies stored by the web app (as `serve --no-dispatch` runs it) and acted on by real `followup worker` processes
on one PostgreSQL database: woken by NOTIFY, exactly once even when a worker is killed between the webhook's answer
and acting."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from factories import patient_rows
from factories import phone as phone_of
from fastapi.testclient import TestClient
from signed import post_sms, sms_fields, webhook_settings
from sqlalchemy import create_engine, insert, text
from sqlalchemy.pool import NullPool
from test_workers_pg import Workers, db_scalar, pg_url, provider, wait_until, workers  # noqa: F401 (fixtures)

from followup.fakeprovider import FakeProvider
from followup.models import Patient
from followup.runtime import Runtime, build_runtime
from followup.services import inbound
from followup.transports.recording import RecordingTransport
from followup.web.app import create_app

pytestmark = pytest.mark.postgres
CLAIM_S = "3"
ONCALL = "+13105550199"


@pytest.fixture
def web(pg_url: str) -> Iterator[tuple[TestClient, Runtime]]:  # noqa: F811
    """The web app with no reply worker of its own: it stores, notifies and answers."""
    settings = webhook_settings(pg_url, dispatch={"reply_claim_seconds": float(CLAIM_S)})
    rt = build_runtime(settings, transports={"sms": RecordingTransport("sms", "+13105550100")})
    with TestClient(create_app(runtime=rt, background=False, act_on_replies=False), client=("127.0.0.1", 5)) as c:
        yield c, rt
    rt.db.dispose()


def seed_patients(url: str, n: int) -> None:
    """`n` SMS patients (factories.patient_rows), phones factories.phone(0..n-1)."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as c:
        c.execute(insert(Patient), patient_rows(n, datetime.now(UTC)))
        c.execute(text("SELECT setval(pg_get_serial_sequence('patient', 'id'), :n)"), {"n": n})
    engine.dispose()


def pending(url: str) -> int:
    return int(db_scalar(url, "SELECT count(*) FROM inbound WHERE status = 'received'"))


def test_worker_killed_before_acting_leaves_replies_pending_and_each_is_acted_on_once(
    pg_url: str,  # noqa: F811
    workers: Workers,  # noqa: F811
    web: tuple[TestClient, Runtime],
) -> None:
    """300 STOPs are answered by the web app and left `received`; one worker claims some and dies (as if killed
    after claiming), another is SIGKILLed mid-run; two more finish: every STOP is acted on, each patient gets one
    confirmation, and no reply is left pending."""
    client, rt = web
    n = 300
    seed_patients(pg_url, n)
    for i in range(n):
        r = post_sms(client, rt.settings, sms_fields(phone_of(i), "STOP", f"SMkill{i:05d}"))
        assert r.status_code == 200
    assert pending(pg_url) == n  # answered, not acted on
    dead = inbound.claim(rt, 10)  # a worker that claimed these and was killed before acting
    assert len(dead) == 10
    workers.env["FOLLOWUP_DISPATCH__REPLY_CLAIM_SECONDS"] = CLAIM_S
    victim = workers.start()
    wait_until(lambda: pending(pg_url) < n - 20, "the first worker to act on some replies", workers)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    workers.start()
    workers.start()
    wait_until(lambda: pending(pg_url) == 0, "every reply acted on", workers)
    by_intent = db_scalar(pg_url, "SELECT count(*) FROM inbound WHERE intent = 'opt_out' AND status = 'processed'")
    assert by_intent == n
    confirmations = db_scalar(
        pg_url,
        "SELECT count(*) FROM (SELECT patient_id FROM message WHERE template = 'opt_out_confirm' "
        "GROUP BY patient_id HAVING count(*) = 1) once",
    )
    total = db_scalar(pg_url, "SELECT count(*) FROM message WHERE template = 'opt_out_confirm'")
    assert (confirmations, total) == (n, n)


def test_a_worker_is_woken_by_notify_not_its_poll(
    pg_url: str,  # noqa: F811
    provider: FakeProvider,  # noqa: F811
    workers: Workers,  # noqa: F811
    web: tuple[TestClient, Runtime],
) -> None:
    """With a 10-minute poll interval, a red-flag reply stored by the web app is acted on, and the on-call alert
    reaches the provider, long before the worker's next poll: the NOTIFY sent with the insert woke it."""
    client, rt = web
    seed_patients(pg_url, 1)
    workers.env["FOLLOWUP_DISPATCH__INTERVAL_SECONDS"] = "600"
    workers.start()
    workers.owner(0)
    wait_until(
        lambda: bool(db_scalar(pg_url, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'")),
        "the worker to LISTEN",
        workers,
    )
    post_sms(client, rt.settings, sms_fields(phone_of(0), "my right hand is getting weaker", "SMnotify"))
    # wait_until gives up after DEADLINE_S (150 s), well before the 600 s poll: not a performance claim, only that
    # the poll cannot have been what woke the worker.
    wait_until(lambda: any(m["to"] == ONCALL for m in provider.messages()), "the on-call alert", workers)
    assert db_scalar(pg_url, "SELECT count(*) FROM escalation") == 1
