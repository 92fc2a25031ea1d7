"""The staff account lifecycle, from the CLI and from the admin page (SQLite and PostgreSQL): disable (its sessions
end), enable, set a password, list and end sessions, reset the second factor, clear failure counts, and every user's
own password change. Every action is in the audit log, with who did it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import select

from followup.cli.main import cli
from followup.clock import FakeClock
from followup.core.totp import code_at
from followup.models import AuditLog, StaffSession, StaffUser
from followup.runtime import Runtime
from followup.services import totp
from followup.services.staff import add_staff, session_staff, start_session
from followup.web.app import create_app

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a new and longer passphrase"
NURSE, BOSS = "nurse@clinic.example", "boss@clinic.example"


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def login(c: TestClient, email: str, password: str = PASSWORD) -> Any:
    token = csrf(c.get("/login").text)
    return c.post("/login", data={"email": email, "password": password, "csrf_token": token}, follow_redirects=False)


def rows(rt: Runtime, model: Any, *where: Any) -> list[Any]:
    with rt.db.session() as s:
        return list(s.exec(select(model).where(*where)).all())


def audited(rt: Runtime, action: str) -> list[AuditLog]:
    return rows(rt, AuditLog, AuditLog.action == action)


def signed_in(app: FastAPI, rt: Runtime, email: str) -> TestClient:
    c = TestClient(app, client=("10.0.0.5", 40000))
    assert login(c, email).status_code == 303
    return c


@pytest.fixture
def app(rt: Runtime, clock: FakeClock) -> FastAPI:
    # The CLI runs on the real clock: sessions made by the app must be alive at that time too.
    clock.set(datetime.now(UTC))
    add_staff(rt, NURSE, "clinician", PASSWORD)
    add_staff(rt, BOSS, "admin", PASSWORD)
    return create_app(runtime=rt, background=False)


@pytest.fixture
def run(rt: Runtime) -> Any:
    """`followup ...` against the test database, with the test's secret key."""
    env = {
        "FOLLOWUP_DATABASE__URL": rt.settings.database.url,
        "FOLLOWUP_SECURITY__SECRET_KEY": rt.settings.security.secret_key,
    }

    def invoke(*args: str, stdin: str | None = None) -> Any:
        return CliRunner().invoke(cli, ["staff", *args], env=env, obj={}, input=stdin)

    return invoke


def test_cli_disable_ends_sessions_and_sign_in_until_enabled(app: FastAPI, rt: Runtime, run: Any) -> None:
    """`staff disable` sets disabled_at, ends the account's sessions at once and refuses its sign-in with the
    usual answer; `staff enable` lets it in again. Both audited as the CLI."""
    nurse = signed_in(app, rt, NURSE)
    r = run("disable", "--email", NURSE)
    assert r.exit_code == 0 and "sessions have ended" in r.output, r.output
    (user,) = rows(rt, StaffUser, StaffUser.email == NURSE)
    assert user.disabled_at is not None
    assert nurse.get("/dashboard", follow_redirects=False).status_code == 303
    refused = login(nurse, NURSE)
    assert refused.status_code == 401 and "Wrong email or password." in refused.text
    assert f"{user.id}\t{NURSE}\tclinician\tdisabled" in run("list").output
    assert run("enable", "--email", NURSE).exit_code == 0
    assert login(nurse, NURSE).status_code == 303
    (disabled,) = audited(rt, "staff.disabled")
    assert (disabled.actor, disabled.subject, disabled.detail) == ("cli", f"staff:{user.id}", {"sessions_ended": 1})
    assert [a.actor for a in audited(rt, "staff.enabled")] == ["cli"]


def test_cli_passwd_replaces_the_password_and_ends_sessions(app: FastAPI, rt: Runtime, run: Any) -> None:
    """`staff passwd` reads the new password from stdin; the old one stops working, the account's sessions end;
    a short one is refused naming the field."""
    nurse = signed_in(app, rt, NURSE)
    weak = run("passwd", "--email", NURSE, stdin="short\n")
    assert weak.exit_code == 1 and "password: at least 10 characters" in weak.output
    r = run("passwd", "--email", NURSE, stdin=NEW_PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert nurse.get("/dashboard", follow_redirects=False).status_code == 303
    assert login(nurse, NURSE).status_code == 401
    assert login(nurse, NURSE, NEW_PASSWORD).status_code == 303
    (changed,) = audited(rt, "staff.password_set")
    assert changed.actor == "cli" and changed.detail == {"sessions_ended": 1}
    assert NEW_PASSWORD not in str([a.detail for a in rows(rt, AuditLog)])


def test_cli_lists_and_revokes_sessions(app: FastAPI, rt: Runtime, run: Any) -> None:
    """`staff sessions` lists open sessions (never their tokens); `--revoke` ends them all at once."""
    phone, desk = signed_in(app, rt, NURSE), signed_in(app, rt, NURSE)
    listed = run("sessions", "--email", NURSE)
    assert listed.exit_code == 0 and "2 open session(s)" in listed.output
    for c in (phone, desk):
        assert c.cookies["followup_staff"] not in listed.output
    revoked = run("sessions", "--email", NURSE, "--revoke")
    assert revoked.exit_code == 0 and "2 session(s)" in revoked.output
    assert all(c.get("/dashboard", follow_redirects=False).status_code == 303 for c in (phone, desk))
    assert "0 open session(s)" in run("sessions", "--email", NURSE).output
    (row,) = audited(rt, "staff.sessions_revoked")
    assert row.actor == "cli" and row.detail == {"sessions_ended": 2}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("disable", "--email", "nobody@clinic.example"), "no staff account nobody@clinic.example"),
        (("enable", "--email", "nobody@clinic.example"), "no staff account"),
        (("sessions", "--email", "nobody@clinic.example"), "no staff account"),
        (("totp-reset", "--email", "nobody@clinic.example"), "no staff account"),
        (("unlock", "--email", "nobody@clinic.example"), "no staff account"),
        (("disable", "--email", BOSS), "the last active admin cannot be disabled"),
    ],
    ids=["disable-unknown", "enable-unknown", "sessions-unknown", "totp-unknown", "unlock-unknown", "last-admin"],
)
def test_cli_refusals_say_why_and_change_nothing(
    app: FastAPI, rt: Runtime, run: Any, args: tuple[str, ...], message: str
) -> None:
    """An unknown account, or disabling the only admin, fails with a clear message and writes nothing."""
    r = run(*args)
    assert r.exit_code == 1 and message in r.output
    assert all(u.disabled_at is None for u in rows(rt, StaffUser))
    assert [a.action for a in rows(rt, AuditLog) if a.action != "staff.added"] == []


def test_cli_resets_a_second_factor(app: FastAPI, rt: Runtime, run: Any, clock: FakeClock) -> None:
    """`staff totp-reset` removes an account's second factor (audited); `staff list` shows which have one."""
    nurse = signed_in(app, rt, NURSE)
    staff = session_staff(rt, nurse.cookies["followup_staff"])
    assert staff is not None
    enrolment = totp.begin(rt, staff)
    totp.confirm(rt, staff, code_at(enrolment.secret, clock.now()), "10.0.0.5")
    assert f"{NURSE}\tclinician\tactive\ttotp" in run("list").output
    assert run("totp-reset", "--email", NURSE).exit_code == 0
    (user,) = rows(rt, StaffUser, StaffUser.email == NURSE)
    assert user.totp_secret is None and user.totp_enabled_at is None
    assert [(a.actor, a.subject) for a in audited(rt, "staff.totp_reset")] == [("cli", f"staff:{user.id}")]


# ---- the same actions for admins in the dashboard ---------------------------------------------------------------


def post_action(c: TestClient, staff_id: int, action: str, **extra: str) -> Any:
    page = c.get("/dashboard/staff")
    data = {"action": action, "csrf_token": csrf(page.text), **extra}
    return c.post(f"/dashboard/staff/{staff_id}", data=data, follow_redirects=False)


def test_admin_page_runs_the_lifecycle_and_audits_it(app: FastAPI, rt: Runtime, clock: FakeClock) -> None:
    """From /dashboard/staff an admin ends a clinician's sessions, sets their password, disables (their sessions
    end) and enables the account, resets their second factor and clears their failure counts; each is one audit
    row naming the admin."""
    boss = signed_in(app, rt, BOSS)
    nurse = signed_in(app, rt, NURSE)
    (user,) = rows(rt, StaffUser, StaffUser.email == NURSE)
    assert user.id is not None
    assert post_action(boss, user.id, "revoke").headers["location"] == "/dashboard/staff?done=staff_revoke"
    assert nurse.get("/dashboard", follow_redirects=False).status_code == 303
    assert post_action(boss, user.id, "password", new_password="short").status_code == 422
    assert post_action(boss, user.id, "password", new_password=NEW_PASSWORD).status_code == 303
    assert login(nurse, NURSE, NEW_PASSWORD).status_code == 303
    assert post_action(boss, user.id, "disable").status_code == 303
    assert nurse.get("/dashboard", follow_redirects=False).status_code == 303
    assert "disabled since" in boss.get("/dashboard/staff").text
    assert post_action(boss, user.id, "enable").status_code == 303
    staff = session_staff(rt, start_session(rt, rows(rt, StaffUser, StaffUser.id == user.id)[0]))
    assert staff is not None
    enrolment = totp.begin(rt, staff)
    totp.confirm(rt, staff, code_at(enrolment.secret, clock.now()), "10.0.0.5")
    assert post_action(boss, user.id, "totp_reset").status_code == 303
    assert post_action(boss, user.id, "unlock").status_code == 303
    boss_id = f"staff:{rows(rt, StaffUser, StaffUser.email == BOSS)[0].id}"
    mine = [(a.action, a.subject) for a in rows(rt, AuditLog) if a.actor == boss_id and a.action != "staff.login"]
    target = f"staff:{user.id}"
    assert mine == [
        ("staff.sessions_revoked", target),
        ("staff.password_set", target),
        ("staff.disabled", target),
        ("staff.enabled", target),
        ("staff.totp_reset", target),
        ("staff.unlocked", target),
    ]
    assert rows(rt, StaffUser, StaffUser.id == user.id)[0].totp_enabled_at is None


@pytest.mark.parametrize(
    ("who", "action", "with_csrf", "status"),
    [
        (NURSE, "disable", True, 403),
        (BOSS, "disable", False, 403),
        (BOSS, "self-disable", True, 422),
        (BOSS, "explode", True, 422),
    ],
    ids=["clinician", "no-csrf", "own-account", "unknown-action"],
)
def test_admin_actions_refused_change_nothing(
    app: FastAPI, rt: Runtime, who: str, action: str, with_csrf: bool, status: int
) -> None:
    """A clinician, a form without its CSRF token, an admin disabling their own account or an unknown action is
    refused, and no account, session or audit row changes."""
    c = signed_in(app, rt, who)
    (nurse,) = rows(rt, StaffUser, StaffUser.email == NURSE)
    (boss,) = rows(rt, StaffUser, StaffUser.email == BOSS)
    target = boss.id if action == "self-disable" else nurse.id
    token = csrf(c.get("/dashboard").text) if with_csrf else "x"
    data = {"action": "disable" if action == "self-disable" else action, "csrf_token": token}
    r = c.post(f"/dashboard/staff/{target}", data=data, follow_redirects=False)
    assert r.status_code == status
    assert all(u.disabled_at is None for u in rows(rt, StaffUser))
    assert all(s.ended_at is None for s in rows(rt, StaffSession))
    assert [a.action for a in rows(rt, AuditLog)] == ["staff.added", "staff.added", "staff.login"]


def test_an_unknown_account_id_is_404(app: FastAPI, rt: Runtime) -> None:
    """An action on an account that does not exist is 404, not an error."""
    boss = signed_in(app, rt, BOSS)
    assert post_action(boss, 999, "disable").status_code == 404


# ---- every user changes their own password ----------------------------------------------------------------------


def change(c: TestClient, current: str, new: str, again: str | None = None) -> Any:
    page = c.get("/dashboard/account")
    data = {
        "action": "password",
        "current_password": current,
        "new_password": new,
        "new_password_again": new if again is None else again,
        "csrf_token": csrf(page.text),
    }
    return c.post("/dashboard/account", data=data, follow_redirects=False)


def test_a_user_changes_their_own_password(app: FastAPI, rt: Runtime) -> None:
    """With the current password, a clinician sets a new one: their other sessions end, this one stays, the old
    password stops working; a wrong current password, a mismatch or a short one change nothing."""
    here, there = signed_in(app, rt, NURSE), signed_in(app, rt, NURSE)
    assert change(here, "not my password", NEW_PASSWORD).status_code == 401
    assert change(here, PASSWORD, NEW_PASSWORD, "something else entirely").status_code == 422
    short = change(here, PASSWORD, "short")
    assert short.status_code == 422 and "new_password: at least 10 characters" in short.text
    assert login(TestClient(app), NURSE).status_code == 303  # still the old password
    r = change(here, PASSWORD, NEW_PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/account?done=password"
    assert here.get("/dashboard").status_code == 200
    assert there.get("/dashboard", follow_redirects=False).status_code == 303
    assert login(TestClient(app), NURSE).status_code == 401
    assert login(TestClient(app), NURSE, NEW_PASSWORD).status_code == 303
    (done,) = audited(rt, "staff.password_changed")
    assert done.detail == {"other_sessions_ended": 2}  # `there` and the check-sign-in above
    assert len(audited(rt, "staff.password_change_failed")) == 1


def test_guessing_the_current_password_from_a_session_is_slowed(app: FastAPI, rt: Runtime) -> None:
    """Someone at an unlocked screen cannot try passwords through the change form faster than at /login: it
    counts against the same account."""
    c = signed_in(app, rt, NURSE)
    statuses = [change(c, f"guess number {i}", NEW_PASSWORD).status_code for i in range(11)]
    assert statuses == [401] * 10 + [429]
