"""Staff sign-in against the real app (SQLite and PostgreSQL): no one can lock the owner out, answers do not tell
real accounts from unknown ones, password hashing is bounded (a flood gets 503 at once), and the optional second
factor (TOTP) works, and is required of admins in production."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import make_settings
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import select

from followup.clock import FakeClock
from followup.core.totp import code_at
from followup.models import AuditLog, StaffSession, StaffUser, Throttle
from followup.runtime import Runtime, build_runtime
from followup.services.staff import add_staff
from followup.web.app import create_app

PASSWORD = "correct horse battery"
OWNER = "nurse@clinic.example"
PRODUCTION_KEY = "5f0c9e2a7b61d4839a0e3c5b7d2f8e1a6c4b9d0e2f7a3c1b8e5d6f0a9c2b4e7d"


def browser(app: FastAPI, address: str, https: bool = False) -> TestClient:
    """A client as one browser at one address (cookies of its own)."""
    base = "https://testserver" if https else "http://testserver"
    return TestClient(app, client=(address, 40000), base_url=base)


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def login(c: TestClient, email: str, password: str = PASSWORD) -> Any:
    token = csrf(c.get("/login").text)
    return c.post("/login", data={"email": email, "password": password, "csrf_token": token}, follow_redirects=False)


def send_code(c: TestClient, code: str, page: str) -> Any:
    return c.post("/login/code", data={"code": code, "csrf_token": csrf(page)}, follow_redirects=False)


def retry_after(r: Any) -> int:
    return int(r.headers["retry-after"])


def rows(rt: Runtime, model: Any, *where: Any) -> list[Any]:
    with rt.db.session() as s:
        return list(s.exec(select(model).where(*where)).all())


@pytest.fixture
def app(rt: Runtime) -> FastAPI:
    return create_app(runtime=rt, background=False)


# ---- no lockout that anyone can hold closed ----------------------------------------------------------------------


def test_an_attackers_failures_never_keep_the_owner_out(app: FastAPI, rt: Runtime, clock: FakeClock) -> None:
    """The attack on the old lockout: wrong passwords as fast as allowed, then one every 15 minutes for hours.
    The attacker's waits grow and stop at the 15-minute cap; the owner, from the browser they signed in with
    before, gets in at once at every moment of it; and no answer says "locked"."""
    add_staff(rt, OWNER, "clinician", PASSWORD)
    owner = browser(app, "10.0.0.5")
    assert login(owner, OWNER).status_code == 303
    owner.post("/logout", data={})
    attacker = browser(app, "203.0.113.66")
    waits: list[int] = []
    for _ in range(80):  # as fast as the answers allow, until the wait has been at its cap a few times
        r = login(attacker, OWNER, "guess!guess!")
        assert r.status_code in (401, 429) and "locked" not in r.text.lower()
        if r.status_code == 429:
            waits.append(retry_after(r))
            clock.advance(timedelta(seconds=retry_after(r)))
        if waits.count(900) == 3:
            break
    assert waits == sorted(waits) and waits[0] <= 2 and waits[-3:] == [900] * 3  # grows, then capped at 15 min
    assert login(owner, OWNER).status_code == 303  # in at the height of it
    owner.post("/logout", data={})
    for _ in range(12):  # then one wrong try every 15 minutes, for 3 hours
        clock.advance(timedelta(minutes=15))
        assert login(attacker, OWNER, "guess!guess!").status_code in (401, 429)
        r = login(owner, OWNER)
        assert r.status_code == 303, r.text
        owner.post("/logout", data={})


def test_an_owner_on_a_new_browser_waits_no_more_than_the_cap(app: FastAPI, rt: Runtime, clock: FakeClock) -> None:
    """From a browser that never signed in, the owner of an attacked account is told how long to wait (never
    more than 15 minutes, never "locked"), and gets in once it has passed."""
    add_staff(rt, OWNER, "clinician", PASSWORD)
    for i in range(25):  # a distributed attack: a new address for each checked guess
        fail_once(browser(app, f"198.51.100.{i + 1}"), clock)
    laptop = browser(app, "10.0.0.9")
    r = login(laptop, OWNER)
    assert r.status_code == 429 and 0 < retry_after(r) <= 900
    assert "Too many sign-in attempts" in r.text and "locked" not in r.text.lower()
    clock.advance(timedelta(seconds=retry_after(r)))
    assert login(laptop, OWNER).status_code == 303


def fail_once(c: TestClient, clock: FakeClock, email: str = OWNER) -> None:
    """One wrong password that is checked (waiting out any Retry-After first)."""
    for _ in range(10):
        r = login(c, email, "guess!guess!")
        if r.status_code == 401:
            return
        assert r.status_code == 429
        clock.advance(timedelta(seconds=retry_after(r)))
    raise AssertionError("never checked")


def test_one_address_guessing_across_accounts_is_slowed(app: FastAPI, rt: Runtime) -> None:
    """Spraying one password over many emails from one address: after 20 failures the address waits."""
    spray = browser(app, "203.0.113.7")
    statuses = [login(spray, f"user{i}@clinic.example", "Summer2026!!").status_code for i in range(21)]
    assert statuses == [401] * 20 + [429]


def test_the_cli_unlock_clears_an_accounts_waits(app: FastAPI, rt: Runtime) -> None:
    """An admin who does not want the owner to wait can clear the account's counts (`followup staff unlock`)."""
    from followup.services.staff import unlock

    add_staff(rt, OWNER, "clinician", PASSWORD)
    for i in range(12):
        login(browser(app, f"198.51.100.{i + 1}"), OWNER, "guess!guess!")
    laptop = browser(app, "10.0.0.9")
    assert login(laptop, OWNER).status_code == 429
    unlock(rt, OWNER, "cli")
    assert login(laptop, OWNER).status_code == 303
    assert [a.actor for a in rows(rt, AuditLog, AuditLog.action == "staff.unlocked")] == ["cli"]


def test_counts_are_kept_as_keyed_hashes_only(app: FastAPI, rt: Runtime) -> None:
    """The throttle table holds neither the email nor the address that failed."""
    add_staff(rt, OWNER, "clinician", PASSWORD)
    login(browser(app, "203.0.113.66"), OWNER, "guess!guess!")
    keys = [t.key for t in rows(rt, Throttle)]
    assert len(keys) == 2 and not any("clinic" in k or "203.0" in k or "nurse" in k for k in keys)


# ---- identical answers -------------------------------------------------------------------------------------------


def normalised(r: Any, email: str) -> tuple[int, str, str]:
    body = re.sub(r'name="csrf_token" value="[^"]+"', "", r.text).replace(email, "EMAIL")
    return r.status_code, body, r.headers.get("retry-after", "")


def test_unknown_disabled_and_real_accounts_are_answered_alike(app: FastAPI, rt: Runtime) -> None:
    """Twelve wrong attempts on an unknown email, a disabled account and a real one get the same statuses, pages
    and Retry-After, and each checked attempt runs exactly one argon2 check: nothing tells them apart."""
    from followup.services.staff import disable

    add_staff(rt, "real@clinic.example", "clinician", PASSWORD)
    add_staff(rt, "gone@clinic.example", "clinician", PASSWORD)
    add_staff(rt, "boss@clinic.example", "admin", PASSWORD)
    disable(rt, "gone@clinic.example", "cli")
    seen = {}
    for n, email in enumerate(("nobody@clinic.example", "gone@clinic.example", "real@clinic.example")):
        c = browser(app, f"192.0.2.{n + 1}")
        answers, hashes = [], []
        for _ in range(12):
            before = rt.password_slots.taken
            # The disabled account is tried with its right password: that, too, must look like a wrong one.
            r = login(c, email, PASSWORD if email.startswith("gone") else "wrong password!")
            answers.append(normalised(r, email))
            hashes.append(rt.password_slots.taken - before)
        seen[email] = answers, hashes
    (unknown, h1), (disabled, h2), (real, h3) = seen.values()
    assert unknown == disabled == real
    assert [a[0] for a in real] == [401] * 10 + [429] * 2
    assert h1 == h2 == h3 == [1] * 10 + [0] * 2


# ---- password hashing is bounded ---------------------------------------------------------------------------------


def test_with_every_hash_slot_busy_a_login_gets_503_at_once(app: FastAPI, rt: Runtime) -> None:
    """While every password-hash slot is held, a sign-in is answered 503 with Retry-After without waiting for
    one (the request would never end if it queued), and nothing is counted against the account or the address."""
    add_staff(rt, OWNER, "clinician", PASSWORD)
    c = browser(app, "10.0.0.5")
    got: list[Any] = []
    slots = [rt.password_slots.take() for _ in range(rt.password_slots.size)]
    try:
        t = threading.Thread(target=lambda: got.append(login(c, OWNER)))
        t.start()
        t.join(timeout=30)
        assert not t.is_alive(), "the sign-in waited for a slot instead of answering"
    finally:
        for slot in slots:
            slot.__exit__(None, None, None)
    (r,) = got
    assert r.status_code == 503 and retry_after(r) >= 1 and "try again" in r.text
    assert rows(rt, Throttle) == [] and rows(rt, AuditLog, AuditLog.action == "staff.login_failed") == []
    assert login(c, OWNER).status_code == 303


def test_a_concurrent_flood_never_hashes_more_than_the_slots_at_once(app: FastAPI, rt: Runtime) -> None:
    """32 sign-ins at once from 32 addresses: each is answered 401 or 503 (never an error), at most
    `password_hash_slots` hashes ever ran together, and every 503 says when to retry."""
    add_staff(rt, OWNER, "clinician", PASSWORD)
    start = threading.Barrier(32)
    answers: list[Any] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        c = browser(app, f"198.51.100.{i + 1}")
        token = csrf(c.get("/login").text)
        start.wait()
        r = c.post("/login", data={"email": OWNER, "password": f"guess {i}!!!!", "csrf_token": token})
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in answers)
    assert len(answers) == 32 and set(statuses) <= {401, 503} and 401 in statuses
    assert all(retry_after(r) >= 1 for r in answers if r.status_code == 503)
    assert rt.password_slots.peak <= rt.settings.security.password_hash_slots
    assert rt.password_slots.in_use == 0


# ---- the second factor -------------------------------------------------------------------------------------------


def enrol(c: TestClient, clock: FakeClock) -> str:
    """Set up TOTP from the account page; returns the secret the page showed once."""
    page = c.get("/dashboard/account")
    r = c.post("/dashboard/account", data={"action": "totp_begin", "csrf_token": csrf(page.text)})
    assert r.status_code == 200
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', r.text)
    assert secret is not None and "otpauth://totp/" in r.text
    code = code_at(secret.group(1), clock.now())
    done = c.post(
        "/dashboard/account",
        data={"action": "totp_confirm", "code": code, "csrf_token": csrf(r.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    return secret.group(1)


def test_totp_enrolment_shows_the_secret_once_and_needs_a_code(app: FastAPI, rt: Runtime, clock: FakeClock) -> None:
    """Setting up shows the secret and its otpauth URI once; a wrong code leaves it off; the right code turns it
    on (audited), and the account page never shows the secret again."""
    add_staff(rt, OWNER, "clinician", PASSWORD)
    c = browser(app, "10.0.0.5")
    assert login(c, OWNER).status_code == 303
    page = c.get("/dashboard/account")
    begun = c.post("/dashboard/account", data={"action": "totp_begin", "csrf_token": csrf(page.text)})
    wrong = c.post(
        "/dashboard/account", data={"action": "totp_confirm", "code": "000000", "csrf_token": csrf(page.text)}
    )
    assert wrong.status_code == 401 and rows(rt, StaffUser)[0].totp_enabled_at is None
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', begun.text)
    assert secret is not None
    r = c.post(
        "/dashboard/account",
        data={"action": "totp_confirm", "code": code_at(secret.group(1), clock.now()), "csrf_token": csrf(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    (user,) = rows(rt, StaffUser)
    assert user.totp_enabled_at is not None and user.totp_secret == secret.group(1)
    assert secret.group(1) not in c.get("/dashboard/account").text
    assert [a.actor for a in rows(rt, AuditLog, AuditLog.action == "staff.totp_enrolled")] == [f"staff:{user.id}"]


def test_sign_in_with_totp_needs_a_fresh_code(app: FastAPI, rt: Runtime, clock: FakeClock) -> None:
    """With a second factor, the right password alone opens nothing: the code page follows; a wrong code is
    refused, the right one opens a session, and the same code cannot be used again."""
    add_staff(rt, OWNER, "clinician", PASSWORD)
    c = browser(app, "10.0.0.5")
    login(c, OWNER)
    secret = enrol(c, clock)
    c.post("/logout", data={})
    clock.advance(timedelta(seconds=31))
    r = login(c, OWNER)
    assert r.status_code == 200 and 'name="code"' in r.text and "followup_staff" not in c.cookies
    assert c.get("/dashboard", follow_redirects=False).status_code == 303
    assert send_code(c, "123456" if code_at(secret, clock.now()) != "123456" else "654321", r.text).status_code == 401
    code = code_at(secret, clock.now())
    ok = send_code(c, code, r.text)
    assert ok.status_code == 303 and c.get("/dashboard").status_code == 200
    c.post("/logout", data={})
    again = login(c, OWNER)
    assert send_code(c, code, again.text).status_code == 401  # replayed
    logins = rows(rt, AuditLog, AuditLog.action == "staff.login")
    assert [a.detail.get("second_factor") for a in logins] == [False, True]
    assert len(rows(rt, AuditLog, AuditLog.action == "staff.code_failed")) == 2


def test_a_code_without_a_right_password_first_is_refused(app: FastAPI, rt: Runtime, clock: FakeClock) -> None:
    """Posting a code with no (or an expired) password step behind it opens nothing."""
    add_staff(rt, OWNER, "clinician", PASSWORD)
    c = browser(app, "10.0.0.5")
    login(c, OWNER)
    secret = enrol(c, clock)
    c.post("/logout", data={})
    stranger = browser(app, "203.0.113.66")
    page = stranger.get("/login").text
    assert send_code(stranger, code_at(secret, clock.now()), page).status_code == 403
    r = login(c, OWNER)
    clock.advance(timedelta(minutes=6))
    assert send_code(c, code_at(secret, clock.now()), r.text).status_code == 403
    assert len(rows(rt, StaffSession)) == 1  # only the one that enrolled


def test_guessing_codes_is_slowed(app: FastAPI, rt: Runtime, clock: FakeClock) -> None:
    """After five wrong codes the account waits before any code is checked, even the right one."""
    add_staff(rt, OWNER, "clinician", PASSWORD)
    c = browser(app, "10.0.0.5")
    login(c, OWNER)
    secret = enrol(c, clock)
    c.post("/logout", data={})
    page = login(c, OWNER).text
    wrong = "000000" if code_at(secret, clock.now()) != "000000" else "111111"
    statuses = [send_code(c, wrong, page).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    r = send_code(c, code_at(secret, clock.now()), page)
    assert r.status_code == 429 and retry_after(r) >= 1


@pytest.fixture
def production(db_url: str, clock: FakeClock, transports: dict[str, Any]) -> Iterator[Runtime]:
    settings = make_settings(
        db_url,
        security={"environment": "production", "secret_key": PRODUCTION_KEY},
        server={"public_url": "https://followup.clinic.example"},
    )
    runtime = build_runtime(settings, clock=clock, transports=dict(transports))
    yield runtime
    runtime.db.dispose()


def test_admins_in_production_must_set_up_totp_first(production: Runtime, clock: FakeClock) -> None:
    """In production an admin without a second factor is sent to set one up before any other page opens (the
    staff API answers 403); once it is on, everything opens, and they cannot turn it off. Clinicians may go
    without."""
    rt = production
    app = create_app(runtime=rt, background=False)
    add_staff(rt, "boss@clinic.example", "admin", PASSWORD)
    add_staff(rt, OWNER, "clinician", PASSWORD)
    admin = browser(app, "10.0.0.5", https=True)
    assert login(admin, "boss@clinic.example").status_code == 303
    for path in ("/dashboard", "/dashboard/staff", "/dashboard/audit", "/dashboard/patients"):
        r = admin.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/account", path
    assert admin.get("/dashboard/api/queue").status_code == 403
    assert "must use a second factor" in admin.get("/dashboard/account").text
    secret = enrol(admin, clock)
    assert admin.get("/dashboard/staff").status_code == 200
    page = admin.get("/dashboard/account")
    assert "Turn it off" not in page.text
    r = admin.post(
        "/dashboard/account",
        data={"action": "totp_remove", "code": code_at(secret, clock.now()), "csrf_token": csrf(page.text)},
    )
    assert r.status_code == 422 and rows(rt, StaffUser, StaffUser.role == "admin")[0].totp_enabled_at is not None
    nurse = browser(app, "10.0.0.6", https=True)
    assert login(nurse, OWNER).status_code == 303 and nurse.get("/dashboard").status_code == 200


def test_another_admin_resets_a_lost_second_factor(production: Runtime, clock: FakeClock) -> None:
    """An admin who lost their phone is reset by another admin (audited); they sign in with the password and are
    sent to set up a new one. No one can reset their own."""
    rt = production
    app = create_app(runtime=rt, background=False)
    add_staff(rt, "boss@clinic.example", "admin", PASSWORD)
    add_staff(rt, "deputy@clinic.example", "admin", PASSWORD)
    boss, deputy = browser(app, "10.0.0.5", https=True), browser(app, "10.0.0.6", https=True)
    login(boss, "boss@clinic.example")
    enrol(boss, clock)
    login(deputy, "deputy@clinic.example")
    enrol(deputy, clock)
    boss_id = rows(rt, StaffUser, StaffUser.email == "boss@clinic.example")[0].id
    page = boss.get("/dashboard/staff")
    own = boss.post(f"/dashboard/staff/{boss_id}", data={"action": "totp_reset", "csrf_token": csrf(page.text)})
    assert own.status_code == 422
    page = deputy.get("/dashboard/staff")
    r = deputy.post(
        f"/dashboard/staff/{boss_id}",
        data={"action": "totp_reset", "csrf_token": csrf(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    (reset,) = rows(rt, AuditLog, AuditLog.action == "staff.totp_reset")
    assert reset.subject == f"staff:{boss_id}" and reset.actor.startswith("staff:") and reset.actor != reset.subject
    boss.post("/logout", data={})
    assert login(boss, "boss@clinic.example").status_code == 303  # the password alone, now
    assert boss.get("/dashboard", follow_redirects=False).headers["location"] == "/dashboard/account"
