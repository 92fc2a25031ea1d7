"""The staff dashboard: accounts and sessions, the escalation queue and page, patients, overview, audit, phone demo."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from conftest import T0, make_settings
from factories import delivered_checkin, intake_form, triage_body
from fastapi.testclient import TestClient
from sqlmodel import select

from followup.cli.main import cli
from followup.clock import FakeClock
from followup.core.vocab import MessageState
from followup.fakeprovider import DEV_TWILIO_AUTH_TOKEN, sign_twilio
from followup.models import AuditLog, Escalation, Inbound, Message, Patient, StaffSession, StaffUser
from followup.runtime import Runtime, build_runtime
from followup.services import silence
from followup.services.dispatch import Dispatcher
from followup.services.roster import non_responders
from followup.services.staff import add_staff
from followup.web.app import create_app
from followup.web.dashboard.highlight import Span, highlight

PASSWORD = "correct horse battery"
PHONE = "+13105550142"


def login(client: TestClient, email: str, password: str = PASSWORD, nxt: str = "") -> Any:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token.group(1), "next": nxt},
        follow_redirects=False,
    )


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


@pytest.fixture
def clinician(rt: Runtime, client: TestClient) -> TestClient:
    add_staff(rt, "nurse@clinic.example", "clinician", PASSWORD)
    assert login(client, "nurse@clinic.example").status_code == 303
    return client


@pytest.fixture
def admin(rt: Runtime, client: TestClient) -> TestClient:
    add_staff(rt, "boss@clinic.example", "admin", PASSWORD)
    assert login(client, "boss@clinic.example").status_code == 303
    return client


def sms_in(client: TestClient, rt: Runtime, body: str, sid: str, sender: str = PHONE) -> Any:
    form = {"MessageSid": sid, "AccountSid": "AC1", "From": sender, "To": "+13105550100", "Body": body, "NumMedia": "0"}
    sig = sign_twilio(rt.settings.server.public_url + "/webhooks/twilio/sms", form, DEV_TWILIO_AUTH_TOKEN)
    return client.post(
        "/webhooks/twilio/sms",
        content=urlencode(form),
        headers={"X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"},
    )


def enroll(client: TestClient, auth: dict[str, str], **over: Any) -> int:
    r = client.post("/api/triage", json=triage_body(**over), headers=auth)
    assert r.status_code == 201, r.text
    return int(r.json()["patient_id"])


def rows(rt: Runtime, model: Any, *where: Any) -> list[Any]:
    with rt.db.session() as s:
        return list(s.exec(select(model).where(*where)).all())


# ---- accounts, sessions, guards ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard",
        "/dashboard/escalations/1",
        "/dashboard/patients",
        "/dashboard/patients/1",
        "/dashboard/overview",
        "/dashboard/visits",
        "/dashboard/assets/live-queue.js",
        "/dashboard/audit",
        "/dashboard/staff",
        "/dashboard/phone",
    ],
)
def test_staff_pages_redirect_to_login_without_a_session(client: TestClient, path: str) -> None:
    """Every dashboard page sends a visitor without a session to /login, remembering where they were going."""
    r = client.get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fdashboard")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/dashboard/api/queue"),
        ("GET", "/dashboard/api/queue/rows"),
        ("POST", "/dashboard/escalations/1"),
        ("POST", "/dashboard/patients/1"),
    ],
)
def test_staff_api_and_forms_refuse_without_a_session(client: TestClient, rt: Runtime, method: str, path: str) -> None:
    """The staff API answers 401 and staff forms change nothing without a session."""
    r = client.request(
        method, path, data={"action": "acknowledge"} if method == "POST" else None, follow_redirects=False
    )
    assert r.status_code == (401 if "/api/" in path else 303)
    assert rows(rt, AuditLog) == []


def test_staff_add_reads_the_password_from_stdin(db_url: str, tmp_path: Any) -> None:
    """`followup staff add` takes the password from stdin when it is not a terminal, and stores an argon2 hash."""
    env = {"FOLLOWUP_DATABASE__URL": db_url, "FOLLOWUP_SECURITY__SECRET_KEY": "k" * 40}
    runner = CliRunner()
    r = runner.invoke(
        cli,
        ["staff", "add", "--email", "Doc@Clinic.example", "--role", "admin"],
        input=PASSWORD + "\n",
        env=env,
        obj={},
    )
    assert r.exit_code == 0, r.output
    rt = build_runtime(make_settings(db_url))
    (user,) = rows(rt, StaffUser)
    assert user.email == "doc@clinic.example" and user.role == "admin"
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    again = runner.invoke(
        cli, ["staff", "add", "--email", "doc@clinic.example"], input=PASSWORD + "\n", env=env, obj={}
    )
    assert again.exit_code != 0 and "exists" in again.output
    weak = runner.invoke(cli, ["staff", "add", "--email", "x@clinic.example"], input="short\n", env=env, obj={})
    assert weak.exit_code != 0 and "at least" in weak.output
    listed = runner.invoke(cli, ["staff", "list"], env=env, obj={})
    assert "doc@clinic.example\tadmin\tactive" in listed.output
    rt.db.dispose()


def test_login_sets_a_safe_session_cookie_and_logout_ends_it(rt: Runtime, client: TestClient) -> None:
    """The session cookie is HttpOnly and SameSite; after logout the old cookie opens nothing."""
    add_staff(rt, "nurse@clinic.example", "clinician", PASSWORD)
    r = login(client, "NURSE@clinic.example ", nxt="/dashboard/overview")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/overview"
    cookie = r.headers["set-cookie"]
    assert "followup_staff=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # served over http in tests; https public URLs get Secure
    token = client.cookies.get("followup_staff")
    page = client.get("/dashboard")
    assert page.status_code == 200 and "nurse@clinic.example" in page.text
    client.post("/logout", data={"csrf_token": csrf(page.text)})
    client.cookies.set("followup_staff", token)  # replay the old cookie
    assert client.get("/dashboard", follow_redirects=False).status_code == 303
    (sess,) = rows(rt, StaffSession)
    assert sess.ended_at is not None
    actions = [a.action for a in rows(rt, AuditLog)]
    assert "staff.login" in actions and "staff.logout" in actions


def test_secure_cookie_over_https(db_url: str, clock: FakeClock, transports: dict[str, Any]) -> None:
    """With an https public URL the session cookie is also Secure."""
    settings = make_settings(db_url, server={"public_url": "https://followup.clinic.example"})
    rt = build_runtime(settings, clock=clock, transports=dict(transports))
    add_staff(rt, "nurse@clinic.example", "clinician", PASSWORD)
    with TestClient(create_app(runtime=rt, background=False), base_url="https://testserver") as c:
        assert "Secure" in login(c, "nurse@clinic.example").headers["set-cookie"]
    rt.db.dispose()


@pytest.mark.parametrize("nxt", ["https://evil.example/", "//evil.example/x", "/api/patients", "/\\evil.example"])
def test_login_never_redirects_off_the_dashboard(rt: Runtime, client: TestClient, nxt: str) -> None:
    """The `next` parameter only ever leads to a dashboard page of this site."""
    add_staff(rt, "nurse@clinic.example", "clinician", PASSWORD)
    assert login(client, "nurse@clinic.example", nxt=nxt).headers["location"] == "/dashboard"


@pytest.mark.parametrize(
    ("email", "password", "csrf_ok", "status", "message"),
    [
        ("nobody@clinic.example", PASSWORD, True, 401, "Wrong email or password"),
        ("", "", True, 422, "Enter your email and password"),
        ("nurse@clinic.example", PASSWORD, False, 403, "expired"),
        ("<script>x</script>", "x" * 5000, True, 401, "Wrong email or password"),
    ],
    ids=["unknown", "empty", "no csrf", "hostile"],
)
def test_bad_logins_say_why_and_open_nothing(
    rt: Runtime, client: TestClient, email: str, password: str, csrf_ok: bool, status: int, message: str
) -> None:
    """Bad sign-ins get a clear message and no session."""
    add_staff(rt, "nurse@clinic.example", "clinician", PASSWORD)
    page = client.get("/login")
    data = {"email": email, "password": password, "csrf_token": csrf(page.text) if csrf_ok else "x"}
    r = client.post("/login", data=data, follow_redirects=False)
    assert r.status_code == status and message in r.text and "<script>x" not in r.text
    assert "followup_staff" not in client.cookies


def test_clinician_cannot_reach_admin_pages(clinician: TestClient) -> None:
    """Audit log and staff list are for admins: a clinician gets 403 and no link to them."""
    assert clinician.get("/dashboard/audit").status_code == 403
    assert clinician.get("/dashboard/staff").status_code == 403
    assert "/dashboard/audit" not in clinician.get("/dashboard").text


def test_admin_sees_every_staff_action_in_the_audit_log(admin: TestClient, rt: Runtime, auth: dict[str, str]) -> None:
    """Who did what, when: logins, views and actions appear in the audit log with the staff member's email."""
    pid = enroll(admin, auth)
    page = admin.get(f"/dashboard/patients/{pid}")
    admin.post(f"/dashboard/patients/{pid}", data={"csrf_token": csrf(page.text), "action": "pause"})
    audit = admin.get("/dashboard/audit")
    assert audit.status_code == 200
    for text in ("boss@clinic.example", "staff.login", "patient.viewed", "patient.pause", f"patient:{pid}"):
        assert text in audit.text
    staff = admin.get("/dashboard/staff")
    assert "boss@clinic.example" in staff.text and "admin" in staff.text


# ---- the escalation queue and page ------------------------------------------------------------------------------


_PHONES = itertools.count(1000)  # distinct numbers: hash(name) % 10000 collided now and then


def escalation(rt: Runtime, tier: str, minutes_ago: int, name: str, status: str = "open") -> int:
    now = rt.clock.now()
    serial = next(_PHONES)
    with rt.db.session() as s:
        p = Patient(
            name=name,
            channel="sms",
            phone=f"+1310555{serial:04d}",
            timezone="America/Los_Angeles",
            status="escalated",
            reply_token=f"p{serial:016x}",
            sms_confirmed_at=now,
            email_confirmed_at=now,
            created_at=now,
            updated_at=now,
        )
        s.add(p)
        s.flush()
        assert p.id is not None
        e = Escalation(
            patient_id=p.id,
            level="emergency" if tier == "emergency" else "red_flag",
            tier=tier,
            status=status,
            source="reply",
            criteria=["weakness"],
            created_at=now - timedelta(minutes=minutes_ago),
            updated_at=now,
        )
        s.add(e)
        s.commit()
        assert e.id is not None
        return e.id


def attach_reply(
    rt: Runtime, eid: int, key: str, body: str, verdict: dict[str, Any], channel: str = "sms", intent: str = "reply"
) -> None:
    """Store a processed reply with the given verdict as the evidence of escalation `eid`."""
    with rt.db.session() as s:
        e = s.get(Escalation, eid)
        assert e is not None
        i = Inbound(
            provider_key=key,
            channel=channel,
            patient_id=e.patient_id,
            sender="+1",
            body=body,
            status="processed",
            intent=intent,
            level="red_flag",
            verdict=verdict,
            received_at=T0,
        )
        s.add(i)
        s.flush()
        assert i.id is not None
        e.inbound_ids = [i.id]
        s.commit()


def test_queue_puts_the_overdue_first_then_open_by_tier_then_acknowledged(clinician: TestClient, rt: Runtime) -> None:
    """Overdue first (even a routine one above an urgent one still in time), then open by tier and age, then the
    acknowledged; each row says the red flag in words and links the patient's number; the title counts."""
    escalation(rt, "routine", 600, "Rita Routine")
    escalation(rt, "urgent", 30, "Una Newer")
    escalation(rt, "emergency", 20, "Emma Emergency")
    escalation(rt, "urgent", 300, "Ursula Older")
    escalation(rt, "routine", 3000, "Otto Overdue")  # 50 h: past the 48 h routine clock
    escalation(rt, "urgent", 10, "Ack Already", status="acknowledged")
    escalation(rt, "routine", 5, "Bo Booked", status="booked")
    html = clinician.get("/dashboard").text
    order = re.findall(r'<td data-label="Patient"><span class="name">([^<]+)</span>', html)
    # Issue 12 asked for this order (it was tier, then age, with acknowledged rows above overdue open ones).
    assert order == ["Emma Emergency", "Ursula Older", "Otto Overdue", "Una Newer", "Rita Routine", "Ack Already"]
    bands = re.findall(r'<th colspan="6" scope="colgroup">([^<]+)</th>', html)
    assert bands == ["Overdue (3)", "Open (2)", "Acknowledged (1)"]
    assert "<title>(5 open, 3 overdue) Escalations: " in html
    assert "overdue by 5 min" in html  # emergency: 15 minutes to acknowledge, 20 gone
    assert "overdue by 1 h 00 min" in html  # urgent: 4 hours, 5 gone
    assert "due in 3 h 30 min" in html and ">acknowledged</span>" in html and "owned" not in html
    assert html.count("Weakness or loss of function") == 6  # the criterion's clinician label, not "weakness"
    assert len(re.findall(r'<a class="tel" href="tel:\+1310555\d{4}">\+1 310-555-\d{4}</a>', html)) == 6
    booked = clinician.get("/dashboard?status=booked").text
    assert "Bo Booked" in booked and "Emma" not in booked and "booked, never acknowledged" in booked
    api = clinician.get("/dashboard/api/queue").json()
    assert [x["tier"] for x in api] == ["emergency", "urgent", "routine", "urgent", "routine", "urgent"]
    assert [x["overdue"] for x in api] == [True, True, True, False, False, False]


def test_queue_rows_fragment_carries_the_count_for_the_title(clinician: TestClient, rt: Runtime) -> None:
    """The live rows the open page fetches carry the new title; the page loads only our own script file."""
    page = clinician.get("/dashboard")
    assert '<script src="/dashboard/assets/live-queue.js" defer></script>' in page.text
    assert "<script>" not in page.text and "script-src 'self'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"].split("script-src")[1].split(";")[0]
    escalation(rt, "emergency", 20, "Emma Emergency")
    rows = clinician.get("/dashboard/api/queue/rows")
    assert rows.status_code == 200 and rows.text.lstrip().startswith('<div id="queue-live"')
    assert 'data-title="(1 open, 1 overdue) Escalations: ' in rows.text and "Emma Emergency" in rows.text
    script = clinician.get("/dashboard/assets/live-queue.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert clinician.get("/dashboard/assets/..%2Fapp.py").status_code == 404


def test_escalation_page_explains_a_learned_layer_finding(clinician: TestClient, rt: Runtime) -> None:
    """A reply flagged by the learned layer shows its probability and threshold, the clause, the ConText checks and
    the closest labelled examples."""
    eid = escalation(rt, "urgent", 5, "Lena Learned")
    body = "my shoes keep catching on the carpet"
    verdict = {
        "level": "red_flag",
        "tier": "urgent",
        "criteria": ["weakness"],
        "findings": [],
        "suppressed": [],
        "layer": "learned",
        "review": False,
        "language": "en",
        "learned": {
            "probability": 0.73,
            "p_emergency": 0.02,
            "criterion": "weakness",
            "clause": body,
            "start": 0,
            "end": len(body),
            "thresholds": {"flag": 0.5, "review": 0.2, "emergency": 0.3},
            "checked": ["negated", "other_person"],
            "not_read": [],
            "neighbours": [{"text": "I keep tripping over my own foot", "label": "weakness", "similarity": 0.81}],
        },
    }
    attach_reply(rt, eid, "twilio:SMlearned", body, verdict)
    html = clinician.get(f"/dashboard/escalations/{eid}").text
    assert 'data-source="learned"' in html and "Flagged by the learned layer:</strong> p=0.73" in html
    assert "escalates at 0.50" in html and "negated, other person" in html
    assert "I keep tripping over my own foot" in html and "similarity 0.81" in html


def test_escalation_page_marks_evidence_and_suppressed_mentions(clinician: TestClient, rt: Runtime) -> None:
    """The reply is shown with what counted and what was only mentioned marked, and the reasons listed."""
    eid = escalation(rt, "urgent", 5, "Eve Evidence")
    body = "No trouble swallowing, but my hand is weaker."
    verdict = {
        "level": "red_flag",
        "tier": "urgent",
        "criteria": ["weakness"],
        "findings": [
            {
                "criterion": "weakness",
                "tier": "urgent",
                "text": "hand is weaker",
                "start": 30,
                "end": 44,
                "rule": "weakness.patterns[0]",
            }
        ],
        "suppressed": [
            {"criterion": "swallowing", "text": "trouble swallowing", "start": 3, "end": 21, "reason": "negated"}
        ],
        "explanation": "Weakness (urgent): matched.",
    }
    attach_reply(rt, eid, "twilio:SMev", body, verdict)
    html = clinician.get(f"/dashboard/escalations/{eid}").text
    assert '<mark class="finding"' in html and ">hand is weaker</mark>" in html
    assert '<mark class="suppressed"' in html and ">trouble swallowing</mark>" in html
    assert "Mentioned but not counted" in html and "negated" in html


def test_reply_with_script_is_shown_as_text(clinician: TestClient, rt: Runtime, auth: dict[str, str]) -> None:
    """A reply containing <script> (through the real webhook) is escaped on every page that shows it."""
    enroll(clinician, auth)
    attack = 'my right hand is getting weaker <script>alert("x")</script><img src=x onerror=alert(1)>'
    assert sms_in(clinician, rt, attack, "SM" + "1" * 32).status_code == 200
    (esc,) = rows(rt, Escalation)
    page = clinician.get(f"/dashboard/escalations/{esc.id}")
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text and "<script>" not in page.text
    assert "<img src=x" not in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe" not in csp.split("script-src")[1].split(";")[0]  # files only
    patient = clinician.get(f"/dashboard/patients/{esc.patient_id}")
    assert "&lt;script&gt;" in patient.text and "<script>" not in patient.text


def test_acknowledge_book_and_close_from_the_page(clinician: TestClient, rt: Runtime) -> None:
    """The buttons move the escalation on and record who did it; closing needs a note."""
    eid = escalation(rt, "urgent", 5, "Al Actions")
    url = f"/dashboard/escalations/{eid}"
    page = clinician.get(url)
    r = clinician.post(url, data={"csrf_token": csrf(page.text), "action": "acknowledge"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"{url}?done=acknowledge"
    (user,) = rows(rt, StaffUser)
    e = rows(rt, Escalation)[0]
    assert e.status == "acknowledged" and e.acknowledged_by == f"staff:{user.id}"
    page = clinician.get(r.headers["location"])
    assert "Acknowledged" in page.text
    again = clinician.post(url, data={"csrf_token": csrf(page.text), "action": "acknowledge"})
    assert again.status_code == 409 and "cannot acknowledge" in again.text.lower()
    no_note = clinician.post(url, data={"csrf_token": csrf(page.text), "action": "close", "note": "  "})
    assert no_note.status_code == 422 and "note" in no_note.text and rows(rt, Escalation)[0].status == "acknowledged"
    clinician.post(url, data={"csrf_token": csrf(page.text), "action": "book"})
    assert rows(rt, Escalation)[0].status == "booked"
    clinician.post(url, data={"csrf_token": csrf(page.text), "action": "close", "note": "Seen; reassured."})
    e = rows(rt, Escalation)[0]
    assert e.status == "closed" and e.note == "Seen; reassured." and e.closed_by == f"staff:{user.id}"


def test_forms_without_csrf_change_nothing(clinician: TestClient, rt: Runtime) -> None:
    """A staff form posted without its CSRF token (another site's form) is refused with 403."""
    eid = escalation(rt, "urgent", 5, "Cy Csrf")
    r = clinician.post(f"/dashboard/escalations/{eid}", data={"action": "acknowledge", "csrf_token": "forged"})
    assert r.status_code == 403 and rows(rt, Escalation)[0].status == "open"


# ---- patients ---------------------------------------------------------------------------------------------------


def patient(
    rt: Runtime,
    name: str,
    status: str = "active",
    sms_state: str = "ok",
    email_state: str = "ok",
    email: str | None = None,
) -> int:
    now = rt.clock.now()
    with rt.db.session() as s:
        p = Patient(
            name=name,
            phone=f"+1310555{abs(hash(name)) % 10000:04d}",
            email=email,
            channel="sms",
            timezone="America/Los_Angeles",
            status=status,
            sms_state=sms_state,
            email_state=email_state,
            reply_token=f"p{abs(hash(name)):016x}"[:17],
            enrolled_at=now,
            sms_confirmed_at=now,
            email_confirmed_at=now,
            created_at=now,
            updated_at=now,
        )
        s.add(p)
        s.commit()
        assert p.id is not None
        return p.id


def checkin(rt: Runtime, pid: int, days_ago: float, n: int) -> None:
    sent = rt.clock.now() - timedelta(days=days_ago)
    with rt.db.session() as s:
        s.add(delivered_checkin(pid, sent, f"ci:{pid}:{n}", body="How are you?"))
        s.flush()
        silence.checkins_sent(s, [pid])  # as the dispatcher does for the batch it records
        s.commit()


def reply(rt: Runtime, pid: int, days_ago: float, body: str = "same as before", trend: str | None = "same") -> None:
    at = rt.clock.now() - timedelta(days=days_ago)
    with rt.db.session() as s:
        s.add(
            Inbound(
                provider_key=f"twilio:{pid}:{days_ago}",
                channel="sms",
                patient_id=pid,
                sender="+1",
                body=body,
                status="processed",
                intent="reply",
                level="none",
                meta={"trend": trend} if trend else {},
                received_at=at,
            )
        )
        silence.replied(s, pid, at)  # as services/inbound.py does when it matches the reply to its patient
        s.commit()


@pytest.fixture
def cohort(rt: Runtime) -> dict[str, int]:
    """One patient per status filter."""
    ids = {
        "active": patient(rt, "Alice Active"),
        "paused": patient(rt, "Paula Paused", status="paused"),
        "escalated": patient(rt, "Ed Escalated", status="escalated"),
        "opted_out": patient(rt, "Olga Optout", sms_state="opted_out"),
        "unreachable": patient(
            rt, "Uma Unreachable", sms_state="invalid", email="uma@example.org", email_state="suppressed"
        ),
        "not_responding": patient(rt, "Nils Silent"),
    }
    checkin(rt, ids["not_responding"], 10, 1)
    checkin(rt, ids["not_responding"], 3, 2)
    checkin(rt, ids["active"], 10, 1)
    checkin(rt, ids["active"], 3, 2)
    reply(rt, ids["active"], 2.5)
    return ids


@pytest.mark.parametrize("status", ["active", "paused", "escalated", "opted_out", "unreachable", "not_responding"])
def test_patient_status_filters(clinician: TestClient, cohort: dict[str, int], status: str) -> None:
    """Each status filter finds its patient."""
    html = clinician.get(f"/dashboard/patients?status={status}").text
    assert f'href="/dashboard/patients/{cohort[status]}"' in html
    if status in ("paused", "escalated"):
        assert html.count('href="/dashboard/patients/') == 1


@pytest.mark.parametrize(
    ("q", "found"), [("alice", "Alice Active"), ("uma@example", "Uma Unreachable"), ("PAULA", "Paula Paused")]
)
def test_patient_search(clinician: TestClient, cohort: dict[str, int], q: str, found: str) -> None:
    """Search by name (any case), email fragment."""
    html = clinician.get(f"/dashboard/patients?q={q}").text
    assert found in html and "Nils Silent" not in html


def test_non_responders_need_two_unanswered_checkins(rt: Runtime, cohort: dict[str, int]) -> None:
    """Two check-ins without any reply since the first make a non-responder; one answer clears it."""
    with rt.db.session() as s:
        assert [x.patient_id for x in non_responders(s, rt.clock.now())] == [cohort["not_responding"]]
    reply(rt, cohort["not_responding"], 1, trend=None)
    with rt.db.session() as s:
        assert non_responders(s, rt.clock.now()) == []


def test_patient_page_timeline_schedule_and_actions(clinician: TestClient, rt: Runtime, auth: dict[str, str]) -> None:
    """The patient page shows messages with delivery states and what is next; pause, resume, channel, unenroll."""
    pid = enroll(clinician, auth)
    Dispatcher(rt).run_once()
    url = f"/dashboard/patients/{pid}"
    page = clinician.get(url)
    assert "Ana Diaz" in page.text and "Upcoming schedule" in page.text and ">sent<" in page.text
    scheduled = rows(rt, Message, Message.patient_id == pid, Message.status == MessageState.SCHEDULED)
    assert scheduled and all(x.channel == "sms" for x in scheduled)
    for action, extra, expect in [
        ("pause", {}, "paused"),
        ("resume", {}, "active"),
        ("channel", {"channel": "email"}, "active"),
    ]:
        r = clinician.post(url, data={"csrf_token": csrf(page.text), "action": action, **extra}, follow_redirects=False)
        assert r.status_code == 303, r.text
        assert rows(rt, Patient, Patient.id == pid)[0].status == expect
    assert rows(rt, Patient, Patient.id == pid)[0].channel == "email"
    assert all(
        x.channel == "email"
        for x in rows(rt, Message, Message.patient_id == pid, Message.status == MessageState.SCHEDULED)
    )
    bad = clinician.post(url, data={"csrf_token": csrf(page.text), "action": "resume"})
    assert bad.status_code == 409 and "cannot resume" in bad.text.lower()
    clinician.post(url, data={"csrf_token": csrf(page.text), "action": "unenroll"})
    assert rows(rt, Patient, Patient.id == pid)[0].status == "unenrolled"
    assert rows(rt, Message, Message.patient_id == pid, Message.status == MessageState.SCHEDULED) == []


# ---- overview ---------------------------------------------------------------------------------------------------


def test_overview_draws_the_figures(clinician: TestClient, rt: Runtime, cohort: dict[str, int]) -> None:
    """Tiles and inline SVG charts: enrolled, response rate, non-responders, escalations per week, trends."""
    escalation(rt, "urgent", 60, "Tess Tier")
    reply(rt, cohort["active"], 1, "a bit worse", "worse")
    html = clinician.get("/dashboard/overview").text
    assert "<svg" in html and "<script" not in html
    assert "Escalations per week, by tier" in html and "1 urgent" in html
    assert re.search(r"<b>6</b>enrolled", html)
    assert "check-ins answered within 3 days (1 of 4)" in html  # two patients, two check-ins each, one answered
    assert re.search(r'<b><a href="/dashboard/patients\?status=not_responding">1</a></b>', html)
    assert "Alice Active" in html and "Replies over time" in html and "latest: <strong>worse</strong>" in html


def test_overview_counts_a_fresh_answer_in_the_tile_and_the_charts_alike(clinician: TestClient, rt: Runtime) -> None:
    """A check-in answered yesterday counts at once in the tile, the response chart and the trend chart; an
    unanswered one still inside its three days is shown as waiting, not as missed (issue 12: "0 of 0")."""
    answered, waiting = patient(rt, "Ann Answered"), patient(rt, "Wes Waiting")
    checkin(rt, answered, 1, 1)
    reply(rt, answered, 0.5, "a bit better", "better")
    checkin(rt, waiting, 1, 1)
    html = clinician.get("/dashboard/overview").text
    assert "check-ins answered within 3 days (1 of 1; 1 sent in the last 3 days, not answered yet)" in html
    assert ": 1 of 1 (100%)</title>" in html and ": 1 better</title>" in html
    assert re.search(r"<b>100%</b>", html)


def test_overview_tiles_fill_whole_rows_and_charts_fill_their_cards(clinician: TestClient) -> None:
    """Eight tiles in a four-column grid (no tile alone on a row); each chart's SVG takes its card's width."""
    html = clinician.get("/dashboard/overview").text
    assert html.count('<div class="tile">') == 8 and "grid-template-columns: repeat(4, 1fr)" in html
    assert "max-width:560px" not in html and html.count('width="100%" style="display:block;height:auto"') == 4


@pytest.mark.parametrize(
    ("text", "findings", "suppressed", "expected"),
    [
        (
            "my arm is weaker",
            [{"text": "weaker", "start": 10, "end": 16, "criterion": "w"}],
            [],
            [Span("my arm is "), Span("weaker", "finding", "W (urgent)")],
        ),
        (
            "weaker, weaker",
            [{"text": "weaker", "start": 99, "end": 105, "criterion": "w"}],
            [],
            [Span("weaker", "finding", "W (urgent)"), Span(", weaker")],
        ),  # bad offsets: found by text
        (
            "no cramps but weak",
            [{"text": "weak", "start": 14, "end": 18, "criterion": "w"}],
            [{"text": "cramps", "start": 3, "end": 9, "criterion": "c", "reason": "negated"}],
            [
                Span("no "),
                Span("cramps", "suppressed", "not counted as c: the reply says it is absent"),
                Span(" but "),
                Span("weak", "finding", "W (urgent)"),
            ],
        ),
        (
            "weak",
            [{"text": "weak", "start": 0, "end": 4, "criterion": "w"}],
            [{"text": "weak", "start": 0, "end": 4, "criterion": "w", "reason": "question"}],
            [Span("weak", "finding", "W (urgent)")],
        ),  # the finding wins
        ("<b>hi</b>", [], [], [Span("<b>hi</b>")]),
        ("", [{"text": "x", "start": 0, "end": 1, "criterion": "w"}], [], [Span("")]),
    ],
    ids=["offsets", "fallback to text", "both kinds", "overlap", "no marks", "empty"],
)
def test_highlight(
    text: str, findings: list[dict[str, Any]], suppressed: list[dict[str, Any]], expected: list[Span]
) -> None:
    """Spans cover the reply exactly once; findings win over suppressed mentions of the same words."""
    marked = highlight(text, [{**f, "tier": "urgent"} for f in findings], suppressed, {"w": "W"})
    assert marked == expected
    assert "".join(s.text for s in marked) == text


@pytest.mark.parametrize(
    ("phone", "email", "says"),
    [
        ("(310) 555-0142", "", "phone already held by"),
        ("(310) 555-0142", "new@example.net", "that contact is not on this record"),
        ("(310) 555-0199", "new@example.net", None),
    ],
    ids=["contactless", "phone-held", "nothing-held"],
)
def test_a_form_record_whose_contact_another_patient_holds_names_that_patient(
    clinician: TestClient, auth: dict[str, str], phone: str, email: str, says: str | None
) -> None:
    """The record a public form made with a phone some patient already holds links, for staff, to that patient."""
    held = enroll(clinician, auth)
    form_page = clinician.get("/intake").text
    r = clinician.post("/intake", data={**intake_form(phone=phone, email=email), "csrf_token": csrf(form_page)})
    assert r.status_code == 201
    page = clinician.get(f"/dashboard/patients/{held + 1}").text
    banner = re.search(r'data-testid="held-by">(.*?)</p>', page, re.S)
    if says is None:
        assert banner is None
    else:
        assert banner and says in banner.group(1) and f'href="/dashboard/patients/{held}"' in banner.group(1)


# ---- the patient-phone demo -------------------------------------------------------------------------------------


def test_patient_phone_reply_goes_through_the_signed_webhook(
    clinician: TestClient, rt: Runtime, auth: dict[str, str]
) -> None:
    """In outbox mode a reply typed as the patient enters as a signed SMS and escalates like a real one."""
    pid = enroll(clinician, auth)
    Dispatcher(rt).run_once()
    page = clinician.get(f"/dashboard/phone/{pid}")
    assert page.status_code == 200 and "Reply as Ana Diaz" in page.text and '<li class="out">' in page.text
    r = clinician.post(
        f"/dashboard/phone/{pid}",
        data={"csrf_token": csrf(page.text), "body": "my right hand is getting weaker"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    (inbound,) = rows(rt, Inbound)
    assert inbound.provider_key.startswith("twilio:SM") and inbound.sender == PHONE
    (esc,) = rows(rt, Escalation)
    assert esc.source == "reply" and inbound.id in esc.inbound_ids
    assert "my right hand is getting weaker" in clinician.get(f"/dashboard/phone/{pid}").text
    empty = clinician.post(f"/dashboard/phone/{pid}", data={"csrf_token": csrf(page.text), "body": " "})
    assert empty.status_code == 422 and len(rows(rt, Inbound)) == 1


def test_patient_phone_says_what_comes_next_before_anything_is_sent(
    clinician: TestClient, auth: dict[str, str]
) -> None:
    """Before anything is sent the demo phone names the next message, its due time and the hours it waits for."""
    pid = enroll(clinician, auth)
    line = re.search(r'data-testid="next-out">(.*?)</p>', clinician.get(f"/dashboard/phone/{pid}").text, re.S)
    assert line and "No messages yet" in clinician.get(f"/dashboard/phone/{pid}").text
    assert "due " in line.group(1) and "09:00 to 20:00 their time" in line.group(1)
    form_page = clinician.get("/intake").text
    r = clinician.post("/intake", data={**intake_form(phone="(213) 555-0177"), "csrf_token": csrf(form_page)})
    assert r.status_code == 201  # the public form: the contact waits for its YES, and the phone says what comes first
    page = clinician.get(f"/dashboard/phone/{pid + 1}").text
    line = re.search(r'data-testid="next-out">(.*?)</p>', page, re.S)
    assert line and line.group(1).startswith("Next from the service: Confirmation request (reply YES), due ")


def test_patient_phone_shows_the_services_answer_without_a_refresh(rt: Runtime, auth: dict[str, str]) -> None:
    """With the dispatcher and reply worker running, the page after Send already shows the service's answer."""
    add_staff(rt, "nurse@clinic.example", "clinician", PASSWORD)
    with TestClient(create_app(runtime=rt, background=True), client=("127.0.0.1", 50000)) as c:
        assert login(c, "nurse@clinic.example").status_code == 303
        pid = enroll(c, auth)
        page = c.get(f"/dashboard/phone/{pid}")
        shown = c.post(f"/dashboard/phone/{pid}", data={"csrf_token": csrf(page.text), "body": "my hand is weaker"})
    assert shown.status_code == 200 and "my hand is weaker" in shown.text
    assert "would like to see you soon" in shown.text  # the escalation's advice, sent before the page was drawn


@pytest.fixture
def live_provider_client(db_url: str, clock: FakeClock, transports: dict[str, Any]) -> Iterator[TestClient]:
    settings = make_settings(
        db_url, twilio={"account_sid": "AC" + "1" * 32, "auth_token": "t" * 32, "from_number": "+13105550100"}
    )
    rt = build_runtime(settings, clock=clock, transports=dict(transports))
    add_staff(rt, "nurse@clinic.example", "clinician", PASSWORD)
    with TestClient(create_app(runtime=rt, background=False)) as c:
        login(c, "nurse@clinic.example")
        yield c
    rt.db.dispose()


def test_patient_phone_is_gone_with_real_providers(live_provider_client: TestClient) -> None:
    """With Twilio configured the demo pages answer 404 and are not in the navigation."""
    assert live_provider_client.get("/dashboard/phone").status_code == 404
    assert live_provider_client.get("/dashboard/phone/1").status_code == 404
    assert live_provider_client.post("/dashboard/phone/1", data={"body": "hi"}).status_code == 404
    assert "/dashboard/phone" not in live_provider_client.get("/dashboard").text


@pytest.mark.parametrize(
    ("text", "html"),
    [
        (
            "Book here: http://x.example/book/AB.c1 or call",
            'Book here: <a href="http://x.example/book/AB.c1">http://x.example/book/AB.c1</a> or call',
        ),
        ('<b>"hi"</b>', "&lt;b&gt;&#34;hi&#34;&lt;/b&gt;"),
        (
            'see http://x.example/"><script>',
            'see <a href="http://x.example/">http://x.example/</a>&#34;&gt;&lt;script&gt;',
        ),
    ],
)
def test_linkify_escapes_then_links(text: str, html: str) -> None:
    """Messages the service sent get clickable links in the phone demo, and everything else stays escaped."""
    from followup.web.dashboard.common import linkify

    assert str(linkify(text)) == html


@pytest.mark.parametrize(
    "url",
    [
        "/dashboard/patients?q=an%00a",
        "/dashboard/patients?q=%ED%A0%80",
        "/dashboard/patients?status=%00",
        "/dashboard/phone?q=%00",
        "/dashboard?status=<script>",
        "/dashboard/patients?page=0",
    ],
)
def test_hostile_query_strings_are_answered_not_crashed(admin: TestClient, url: str) -> None:
    """NUL bytes, lone surrogates, unknown filters and bad pages get a page or a 422, never a server error."""
    r = admin.get(url)
    assert r.status_code in (200, 422) and "<script>" not in r.text


def test_close_note_is_stored_without_nul(clinician: TestClient, rt: Runtime) -> None:
    """A note with a NUL character is stored cleaned, on both databases."""
    eid = escalation(rt, "urgent", 5, "Nu Null")
    page = clinician.get(f"/dashboard/escalations/{eid}")
    r = clinician.post(
        f"/dashboard/escalations/{eid}",
        data={"csrf_token": csrf(page.text), "action": "close", "note": "seen\x00 today"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert rows(rt, Escalation)[0].note == "seen today"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/dashboard/escalations/{big}"),
        ("get", "/dashboard/patients/{big}"),
        ("get", "/dashboard/phone/{big}"),
        ("post", "/dashboard/escalations/{big}"),
        ("post", "/dashboard/patients/{big}"),
    ],
    ids=["escalation", "patient", "phone", "escalation-post", "patient-post"],
)
def test_ids_beyond_the_database_are_refused_not_crashed(clinician: TestClient, method: str, path: str) -> None:
    """An id larger than the database's integers is a 422 (or 404), never a 500."""
    r = getattr(clinician, method)(path.format(big="9" * 25))
    assert r.status_code in (404, 422)


def test_escalation_page_warns_when_the_sender_was_not_verified(clinician: TestClient, rt: Runtime) -> None:
    """A red flag read in an email not proven to be the patient's says so on the escalation page, with what to do."""
    eid = escalation(rt, "routine", 5, "Una Unverified")
    verdict = {"level": "red_flag", "tier": "emergency", "criteria": ["breathing"], "findings": [], "suppressed": []}
    attach_reply(
        rt,
        eid,
        "email:<forged@evil.example>",
        "I can't breathe",
        {**verdict, "sender_unverified": True},
        channel="email",
        intent="unverified_sender",
    )
    html = clinician.get(f"/dashboard/escalations/{eid}").text
    assert 'data-testid="unverified-sender"' in html and "the detector read it as emergency" in html
    assert "Call the patient on the number you have" in html
