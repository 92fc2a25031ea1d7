"""Signed outbound webhooks: Standard Webhooks signatures checked by a real receiver, health details only for a
trusted endpoint, the transactional outbox, retries with back-off, and nothing lost or sent twice across a
restart. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta

import factories
import pytest
from conftest import T0, make_settings
from receiver import Receiver
from sqlmodel import select

from followup.clock import FakeClock
from followup.core import webhooks as wh
from followup.models import Escalation, Patient, WebhookDelivery
from followup.runtime import Runtime, build_runtime
from followup.services import booking, webhooks_out
from followup.services.escalation import escalate
from followup.services.patients import change_escalation
from followup.services.reachability import set_channel_state
from followup.settings import Settings, SettingsError, load_settings
from followup.transports.recording import RecordingTransport
from followup.transports.webhook_http import RecordingPoster

PAGER_SECRET = "whsec_" + base64.b64encode(b"p" * 8 + bytes(range(24))).decode()
EHR_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
HEALTH = {"tier", "level", "criteria", "criteria_labels", "evidence"}


# ---- the pure part -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "valid"),
    [
        ({}, True),
        ({"body": '{"x":2}'}, False),
        ({"webhook-id": "evt_other"}, False),
        ({"webhook-timestamp": "1000001"}, False),
        ({"now": 1000000 + 301}, False),  # older than five minutes: a replay
        ({"now": 1000000 - 301}, False),
        ({"webhook-signature": "v1,AAAA"}, False),
        ({"webhook-signature": "v1,AAAA {sig}"}, True),  # several signatures (a key rotation): one must match
        ({"secret": EHR_SECRET}, False),
    ],
)
def test_signature_verifies_only_the_exact_request(change: dict[str, object], valid: bool) -> None:
    """v1 HMAC-SHA256 over id.timestamp.body: any change to id, timestamp, body, key or age fails it."""
    body = '{"x":1}'
    headers = wh.headers(PAGER_SECRET, "evt_1", 1000000, body)
    sig = headers["webhook-signature"]
    for k in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        if k in change:
            headers[k] = str(change[k]).format(sig=sig)
    secret = str(change.get("secret", PAGER_SECRET))
    now = float(change.get("now", 1000000))  # type: ignore[arg-type]
    assert wh.verify(secret, headers, str(change.get("body", body)), now) is valid


@pytest.mark.parametrize(("attempt", "wait"), [(1, 10), (2, 20), (3, 40), (9, 2560), (10, 3600), (30, 3600)])
def test_backoff_doubles_up_to_the_ceiling(attempt: int, wait: float) -> None:
    """Retries wait 10 s, 20 s, 40 s ... and never more than the ceiling."""
    assert wh.backoff_seconds(attempt, 10, 3600) == wait


def test_payload_carries_health_details_only_when_trusted() -> None:
    """The clinical fields (tier, level, criteria, labels, evidence, note) go to trusted endpoints only."""
    data = {"escalation_id": 4, "tier": "emergency", "criteria": ["weakness"], "evidence": ["hand weaker"], "note": "x"}
    plain = json.loads(wh.payload("evt_1", "escalation.opened", T0, data, trusted=False))
    full = json.loads(wh.payload("evt_1", "escalation.opened", T0, data, trusted=True))
    assert plain == {
        "id": "evt_1",
        "type": "escalation.opened",
        "timestamp": T0.isoformat(),
        "data": {"escalation_id": 4},
    }
    assert full["data"] == data


def test_endpoint_secrets_come_from_the_environment_only(tmp_path: object) -> None:
    """A secret in settings.toml is refused; FOLLOWUP_WEBHOOK_SECRET_<NAME> supplies it; a bad one names the
    variable to fix."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "settings.toml"
    path.write_text('[[webhooks.endpoints]]\nname = "pager"\nurl = "https://pager.example/hook"\nsecret = "whsec_x"\n')
    with pytest.raises(SettingsError, match="FOLLOWUP_WEBHOOK_SECRET_PAGER"):
        load_settings(path, {})
    path.write_text('[[webhooks.endpoints]]\nname = "pager"\nurl = "https://pager.example/hook"\n')
    with pytest.raises(SettingsError, match="FOLLOWUP_WEBHOOK_SECRET_PAGER"):
        load_settings(path, {})
    with pytest.raises(SettingsError, match="too short"):
        load_settings(path, {"FOLLOWUP_WEBHOOK_SECRET_PAGER": "whsec_" + base64.b64encode(b"short").decode()})
    settings = load_settings(path, {"FOLLOWUP_WEBHOOK_SECRET_PAGER": PAGER_SECRET})
    (endpoint,) = settings.webhooks.endpoints
    assert (endpoint.secret, endpoint.trusted, len(endpoint.events)) == (PAGER_SECRET, False, 6)


# ---- against real receivers ------------------------------------------------------------------------------------


@pytest.fixture
def pager() -> Iterator[Receiver]:
    r = Receiver(PAGER_SECRET)
    yield r
    r.stop()


@pytest.fixture
def ehr() -> Iterator[Receiver]:
    r = Receiver(EHR_SECRET)
    yield r
    r.stop()


def hooks(pager: Receiver, ehr: Receiver, **over: object) -> dict[str, object]:
    return {
        "endpoints": [
            {"name": "pager", "url": pager.url, "secret": PAGER_SECRET},
            {"name": "ehr", "url": ehr.url, "secret": EHR_SECRET, "trusted": True},
        ],
        "backoff_base_seconds": 10.0,
        **over,
    }


@pytest.fixture
def settings(db_url: str, pager: Receiver, ehr: Receiver) -> Settings:
    return make_settings(db_url, webhooks=hooks(pager, ehr))


def open_escalation(rt: Runtime, phone: str = "+13105550142") -> int:
    return factories.open_escalation(rt, phone=phone)


def deliveries(rt: Runtime) -> list[WebhookDelivery]:
    with rt.db.session() as s:
        return list(s.exec(select(WebhookDelivery).order_by(WebhookDelivery.id)).all())


def test_every_event_reaches_both_receivers_signed_and_health_details_only_the_trusted_one(
    rt: Runtime, pager: Receiver, ehr: Receiver
) -> None:
    """Opening, acknowledging and booking an escalation, a booked visit and an opt-out each reach both receivers
    with a valid signature and a stable id; the pager never sees criteria, tier or the reply's words."""
    eid = open_escalation(rt)
    change_escalation(rt, eid, "acknowledge", "staff:1")
    slot = booking.view(rt, eid).slots[0]
    booking.book(rt, eid, slot)
    with rt.db.session() as s:
        p = s.get(Patient, s.get(Escalation, eid).patient_id)  # type: ignore[union-attr]
        assert p is not None
        set_channel_state(rt, s, p, "sms", "opted_out", "sms_keyword", rt.clock.now())
        s.commit()
    report = webhooks_out.deliver_due(rt)
    kinds = [
        "escalation.opened",
        "escalation.acknowledged",
        "escalation.booked",
        "appointment.booked",
        "patient.opted_out",
    ]
    assert (report.delivered, report.retried, report.failed) == (10, 0, 0)
    for receiver in (pager, ehr):
        assert [r.body["type"] for r in receiver.got] == kinds
        assert all(r.valid and r.answered == 204 for r in receiver.got)
        assert [r.webhook_id for r in receiver.got] == [r.body["id"] for r in receiver.got]
    assert [r.webhook_id for r in pager.got] == [r.webhook_id for r in ehr.got]  # one event id per event
    opened_pager, opened_ehr = pager.of_type("escalation.opened")[0].body, ehr.of_type("escalation.opened")[0].body
    assert not HEALTH & set(opened_pager["data"]) and "weaker" not in json.dumps(pager.got[0].body)
    assert opened_ehr["data"]["tier"] == "urgent" and opened_ehr["data"]["evidence"] == ["my hand is weaker"]
    assert opened_pager["data"]["escalation_id"] == eid and opened_pager["data"]["url"].endswith(f"/{eid}")
    assert pager.of_type("appointment.booked")[0].body["data"]["starts_at"] == slot.isoformat()
    assert webhooks_out.deliver_due(rt).claimed == 0  # delivered is done


def test_a_change_rolled_back_announces_nothing(rt: Runtime, pager: Receiver) -> None:
    """The outbox row is written in the change's transaction: a rollback leaves no event behind."""
    now = rt.clock.now()
    with rt.db.session() as s:
        p = Patient(
            name="Bo",
            phone="+13105550143",
            channel="sms",
            timezone="UTC",
            reply_token="x1",
            created_at=now,
            updated_at=now,
        )
        s.add(p)
        s.flush()
        escalate(rt, s, p, level="red_flag", tier="urgent", criteria=["weakness"], evidence=[], source="reply", now=now)
        assert len(s.new) > 0
        s.rollback()
    assert deliveries(rt) == [] and webhooks_out.deliver_due(rt).claimed == 0 and pager.got == []


def test_a_failing_receiver_gets_retries_with_backoff_and_the_same_event_id(
    rt: Runtime, clock: FakeClock, pager: Receiver, ehr: Receiver
) -> None:
    """Two 500s then a 2xx: retried after 10 s and 20 s (not before), the same webhook-id each time; the healthy
    receiver got it once."""
    pager.fail_next(2, 503)
    open_escalation(rt)
    assert webhooks_out.deliver_due(rt).retried == 1
    clock.advance(timedelta(seconds=9))
    assert webhooks_out.deliver_due(rt).claimed == 0  # not yet
    clock.advance(timedelta(seconds=1))
    assert webhooks_out.deliver_due(rt).retried == 1
    clock.advance(timedelta(seconds=19))
    assert webhooks_out.deliver_due(rt).claimed == 0
    clock.advance(timedelta(seconds=1))
    assert webhooks_out.deliver_due(rt).delivered == 1
    assert [r.answered for r in pager.got] == [503, 503, 204]
    assert len({r.webhook_id for r in pager.got}) == 1 and all(r.valid for r in pager.got)
    assert len(ehr.got) == 1
    row = next(d for d in deliveries(rt) if d.endpoint == "pager")
    assert (row.status, row.attempts, row.last_status) == ("delivered", 3, 204)


def test_giving_up_after_max_attempts_and_an_admin_sends_again(
    db_url: str, clock: FakeClock, pager: Receiver, ehr: Receiver, transports: dict[str, RecordingTransport]
) -> None:
    """After webhooks.max_attempts failures the delivery is failed (410 Gone at once); send_again requeues it,
    audited, and it is delivered with its original id."""
    settings = make_settings(db_url, webhooks=hooks(pager, ehr, max_attempts=2))
    rt = build_runtime(settings, clock=clock, transports=dict(transports))
    try:
        pager.fail_next(2, 500)
        ehr.fail_next(1, 410)
        open_escalation(rt)
        webhooks_out.deliver_due(rt)
        clock.advance(timedelta(minutes=5))
        webhooks_out.deliver_due(rt)
        clock.advance(timedelta(hours=2))
        assert webhooks_out.deliver_due(rt).claimed == 0
        assert {d.endpoint: (d.status, d.attempts) for d in deliveries(rt)} == {
            "pager": ("failed", 2),
            "ehr": ("failed", 1),
        }
        pager_row = next(d for d in deliveries(rt) if d.endpoint == "pager")
        assert pager_row.id is not None
        webhooks_out.send_again(rt, pager_row.id, "staff:1")
        assert webhooks_out.deliver_due(rt).delivered == 1
        assert [r.answered for r in pager.got] == [500, 500, 204] and len({r.webhook_id for r in pager.got}) == 1
    finally:
        rt.db.dispose()


def test_nothing_lost_or_sent_twice_across_a_restart(
    db_url: str, pager: Receiver, ehr: Receiver, transports: dict[str, RecordingTransport]
) -> None:
    """A process dies after claiming (rows left `sending`) and with receivers down; a new process on the same
    database delivers every event exactly once after the lease, and a further pass sends nothing."""
    settings = make_settings(db_url, webhooks=hooks(pager, ehr, lease_seconds=60))
    clock = FakeClock(T0)
    first = build_runtime(settings, clock=clock, transports=dict(transports), webhook_poster=RecordingPoster())
    eids = [open_escalation(first, f"+1310555014{i}") for i in range(3)]
    delivered_before = webhooks_out.deliver_due(first)
    assert delivered_before.delivered == 6  # the recording poster answered 200: nothing reached the receivers
    for eid in eids:
        change_escalation(first, eid, "acknowledge", "staff:1")
    claimed = webhooks_out._claim(first)  # the process claims the acknowledgements, then dies before posting
    assert len(claimed) == 6
    first.db.dispose()

    clock.advance(timedelta(seconds=30))
    second = build_runtime(settings, clock=clock, transports=dict(transports))
    try:
        assert webhooks_out.deliver_due(second).claimed == 0  # the dead process's lease still holds
        clock.advance(timedelta(seconds=31))
        assert webhooks_out.deliver_due(second).delivered == 6
        assert webhooks_out.deliver_due(second).claimed == 0
        for receiver in (pager, ehr):
            ids = [r.webhook_id for r in receiver.got]
            assert len(ids) == 3 == len(set(ids)) and all(r.valid for r in receiver.got)
            assert {r.body["type"] for r in receiver.got} == {"escalation.acknowledged"}
        assert all(d.status == "delivered" for d in deliveries(second))
    finally:
        second.db.dispose()


def test_the_delivery_log_is_for_admins(rt: Runtime, pager: Receiver) -> None:
    """Admins see each delivery with its event, endpoint, state and attempts; clinicians get 403."""
    from fastapi.testclient import TestClient

    from followup.services.staff import add_staff, start_session
    from followup.web.app import create_app
    from followup.web.staffauth import SESSION_COOKIE

    pager.fail_next(1, 500)
    open_escalation(rt)
    webhooks_out.deliver_due(rt)
    app = create_app(runtime=rt, background=False)
    with TestClient(app) as c:
        c.cookies.set(SESSION_COOKIE, start_session(rt, add_staff(rt, "a@clinic.example", "admin", "correct horse b")))
        page = c.get("/dashboard/webhooks")
        assert page.status_code == 200
        # "HTTP 5xx", not bare digits: the page's CSP nonce may hold any three digits
        assert "escalation.opened" in page.text and "pager" in page.text and "HTTP 503" not in page.text
        assert "HTTP 500" in page.text and "weaker" not in page.text
    with TestClient(app) as c:
        user = add_staff(rt, "c@clinic.example", "clinician", "correct horse b")
        c.cookies.set(SESSION_COOKIE, start_session(rt, user))
        assert c.get("/dashboard/webhooks").status_code == 403


def test_events_are_only_written_for_subscribed_endpoints(
    db_url: str, clock: FakeClock, pager: Receiver, ehr: Receiver, transports: dict[str, RecordingTransport]
) -> None:
    """An endpoint subscribed to patient.opted_out alone gets no escalation events; no endpoint, no rows."""
    only = {"endpoints": [{"name": "pager", "url": pager.url, "secret": PAGER_SECRET, "events": ["patient.opted_out"]}]}
    rt = build_runtime(make_settings(db_url, webhooks=only), clock=clock, transports=dict(transports))
    try:
        open_escalation(rt)
        assert deliveries(rt) == []
    finally:
        rt.db.dispose()


def test_finished_deliveries_are_forgotten_after_the_retention_period(
    rt: Runtime, clock: FakeClock, pager: Receiver
) -> None:
    """Delivered and failed deliveries (a trusted endpoint's copy quotes the reply) are deleted after
    privacy.retention_days; pending ones stay until delivered."""
    pager.fail_next(1, 500)
    open_escalation(rt)
    webhooks_out.deliver_due(rt)  # ehr delivered, pager pending
    clock.advance(timedelta(days=rt.settings.privacy.retention_days + 1))
    assert webhooks_out.forget_old(rt) == 1
    assert [(d.endpoint, d.status) for d in deliveries(rt)] == [("pager", "pending")]
