"""/metrics and /readyz: a token (or an allowed scraper address) is needed, the counters and the database's
figures move with a scripted flow, and readiness follows the dispatcher's heartbeat. SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import ROOT
from factories import triage_body
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from signed import post_sms, sms_fields, webhook_settings

from followup.clock import FakeClock
from followup.runtime import Runtime, build_runtime
from followup.services.dispatch import Dispatcher
from followup.services.ops import heartbeat
from followup.transports.recording import RecordingTransport
from followup.web.app import create_app

PHONE = "+13105550142"


@pytest.fixture
def rt(db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]) -> Iterator[Runtime]:
    runtime = build_runtime(
        webhook_settings(db_url, metrics={"allow_addresses": ["10.1.2.0/24"], "figures_cache_seconds": 0}),
        clock=clock,
        transports=dict(transports),
    )
    yield runtime
    runtime.db.dispose()


def scrape(client: TestClient, auth: dict[str, str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics", headers=auth)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.parametrize(
    ("headers", "address", "status"),
    [
        ({}, "203.0.113.9", 401),
        ({"Authorization": "Bearer fu_not-a-token"}, "203.0.113.9", 401),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "203.0.113.9", 401),
        ({}, "10.1.3.4", 401),  # next to the allowed network, not in it
        ({}, "10.1.2.77", 200),  # a named scraper's address
        ({"Authorization": "Bearer {token}"}, "203.0.113.9", 200),
    ],
)
def test_scraping_needs_a_token_or_an_allowed_address(
    rt: Runtime, token: str, headers: dict[str, str], address: str, status: int
) -> None:
    """Without a live API token, only an address in metrics.allow_addresses may scrape."""
    with TestClient(create_app(runtime=rt, background=False), client=(address, 5000)) as c:
        r = c.get("/metrics", headers={k: v.format(token=token) for k, v in headers.items()})
    assert r.status_code == status
    assert ("followup_messages_sent_total" in r.text) is (status == 200)


def test_counters_and_figures_move_with_a_scripted_flow(
    client: TestClient, rt: Runtime, clock: FakeClock, auth: dict[str, str]
) -> None:
    """Enrol, dispatch, a red-flag reply by signed SMS, an overdue acknowledgement: messages by state and channel,
    sends and their latency, callbacks, verdicts by level and layer, detector and webhook latency, open
    escalations and breaches all move; the backlog and its age too."""
    before = scrape(client, auth)
    r = client.post("/api/triage", json=triage_body(phone=PHONE, timezone="America/Los_Angeles"), headers=auth)
    assert r.status_code == 201, r.text
    queued = scrape(client, auth)
    due = value(queued, "followup_backlog_messages")
    assert due >= 1 and value(queued, "followup_messages", state="scheduled", channel="sms") >= due
    clock.advance(timedelta(minutes=5))
    aged = scrape(client, auth)
    assert value(aged, "followup_backlog_age_seconds") >= 300

    Dispatcher(rt).run_once()
    sent = scrape(client, auth)
    assert value(sent, "followup_backlog_messages") == 0
    assert value(sent, "followup_messages", state="sent", channel="sms") >= due
    grew = value(sent, "followup_messages_sent_total", channel="sms", outcome="sent") - value(
        before, "followup_messages_sent_total", channel="sms", outcome="sent"
    )
    assert grew == due
    assert (
        value(sent, "followup_send_seconds_count", channel="sms")
        - value(before, "followup_send_seconds_count", channel="sms")
        == due
    )

    reply = post_sms(client, rt.settings, sms_fields(PHONE, "I can't breathe", "SMmetrics1"))
    assert reply.status_code == 200, reply.text
    after = scrape(client, auth)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("followup_callbacks_received_total", source="twilio_sms") == 1
    assert sum(moved("followup_verdicts_total", level="emergency", layer=layer) for layer in ("rules", "both")) == 1
    assert moved("followup_detector_seconds_count") == 1
    assert moved("followup_webhook_request_seconds_count", route="/webhooks/twilio/sms") == 1
    assert value(after, "followup_escalations_open", tier="emergency") == 1
    assert value(after, "followup_escalations_ack_overdue", tier="emergency") == 0
    clock.advance(timedelta(minutes=16))
    late = scrape(client, auth)
    assert value(late, "followup_escalations_ack_overdue", tier="emergency") == 1
    assert value(late, "followup_replies_waiting") == 0


def test_readyz_follows_the_dispatcher_heartbeat(client: TestClient, rt: Runtime, clock: FakeClock) -> None:
    """Not ready before any dispatcher pass; ready after a heartbeat; not ready once it is older than
    metrics.ready_max_age_seconds. It says why, and nothing else."""
    r = client.get("/readyz")
    assert (r.status_code, r.json()["dispatcher"]) == (503, "never")
    heartbeat(rt, "host:1:abc", clock.now(), claimed=3, sent=3)
    r = client.get("/readyz")
    assert (r.status_code, r.json()["status"], r.json()["database"]) == (200, "ready", "ok")
    clock.advance(timedelta(seconds=rt.settings.metrics.ready_max_age_seconds + 1))
    r = client.get("/readyz")
    assert (r.status_code, r.json()["dispatcher"]) == (503, "stale")


def test_the_workers_page_shows_each_worker_and_its_last_pass(
    client: TestClient, rt: Runtime, clock: FakeClock
) -> None:
    """Admins see every worker's id, passes and last pass; clinicians get 403."""
    from followup.services.staff import add_staff, start_session
    from followup.web.staffauth import SESSION_COOKIE

    heartbeat(rt, "web-1:42:abcdef", clock.now(), claimed=7, sent=5)
    heartbeat(rt, "web-1:42:abcdef", clock.now(), claimed=2, sent=2)
    client.cookies.set(SESSION_COOKIE, start_session(rt, add_staff(rt, "a@clinic.example", "admin", "correct horse b")))
    page = client.get("/dashboard/workers")
    assert page.status_code == 200 and "web-1:42:abcdef" in page.text and "2 / 2" in page.text
    assert "<strong>ready</strong>" in page.text
    client.cookies.set(
        SESSION_COOKIE, start_session(rt, add_staff(rt, "c@clinic.example", "clinician", "correct horse b"))
    )
    assert client.get("/dashboard/workers").status_code == 403


def test_multi_process_mode_sums_every_process(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set, counts made in two other processes are all in one exposition."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = "from followup import metrics; metrics.MESSAGES_SENT.labels('sms', 'sent').inc(3)"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, cwd=ROOT)  # noqa: S603
    show = (
        "from followup import metrics; import sys; sys.stdout.write(metrics.exposition(metrics.DbFigures()).decode())"
    )
    out = subprocess.run([sys.executable, "-c", show], env=env, check=True, cwd=ROOT, capture_output=True, text=True)  # noqa: S603
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(out.stdout)
        for s in f.samples
    }
    assert samples[("followup_messages_sent_total", (("channel", "sms"), ("outcome", "sent")))] == 6


def test_the_shipped_dashboard_and_alerts_use_only_metrics_we_expose(
    client: TestClient, rt: Runtime, auth: dict
) -> None:
    """Every followup_* name in docs/grafana-dashboard.json and docs/prometheus-alerts.yml is one /metrics
    exposes (a renamed metric would silently blank a panel or an alert); the alerts cover the three the clinic
    needs."""
    import re

    heartbeat(rt, "host:1:abc", rt.clock.now(), claimed=0, sent=0)
    text = client.get("/metrics", headers=auth).text
    exposed = {re.sub(r"_total$", "", name) for name in re.findall(r"^# TYPE (\w+) ", text, re.M)}
    used = set()
    for doc in ("docs/grafana-dashboard.json", "docs/prometheus-alerts.yml"):
        used |= set(re.findall(r"\bfollowup_\w+", (ROOT / doc).read_text()))
    families = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in used}
    assert used and families <= exposed, sorted(families - exposed)
    alerts = (ROOT / "docs/prometheus-alerts.yml").read_text()
    for name in ("FollowupDispatcherStalled", "FollowupBacklogGrowing", "FollowupEmergencyUnacknowledged"):
        assert f"alert: {name}" in alerts


def test_scrapes_within_the_cache_window_share_one_count(
    db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """With metrics.figures_cache_seconds, a second scrape right after the first reuses its figures."""
    from followup.services.ops import FigureCache

    rt = build_runtime(webhook_settings(db_url), clock=clock, transports=dict(transports))
    try:
        cache = FigureCache(60)
        first = cache.get(rt)
        heartbeat(rt, "host:1:abc", clock.now(), claimed=0, sent=0)
        assert cache.get(rt) is first and first.dispatcher_age_seconds is None
        assert FigureCache(0).get(rt).dispatcher_age_seconds == 0
    finally:
        rt.db.dispose()
