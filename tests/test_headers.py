"""Security headers, walked over every page the app serves (as test_access.py walks its routes): no page can be
framed by another site, every HTML page has a Content-Security-Policy under which its own markup works (no inline
script, no event attribute; scripts only from this origin, and only where the CSP allows them), and every answer,
HTML or not, has nosniff, a referrer policy and X-Frame-Options. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import make_settings
from factories import triage_body
from fastapi.testclient import TestClient
from test_access import concrete, every_route

from followup.runtime import Runtime, build_runtime
from followup.services import booking as booking_svc
from followup.services.staff import add_staff
from followup.web.app import create_app

PASSWORD = "correct horse battery"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
SCRIPT_SRC = re.compile(r"<script[^>]*\bsrc=\"([^\"]+)\"", re.I)
DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc"}  # FastAPI's pages, development only: their own test below
EVENT_ATTRIBUTE = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)


def csp_parts(header: str) -> dict[str, str]:
    return {d.strip().split(" ", 1)[0]: d.strip() for d in header.split(";") if d.strip()}


def check_headers(r: Any, where: str) -> None:
    """The headers every answer has."""
    assert r.headers.get("x-frame-options") == "DENY", where
    assert r.headers.get("x-content-type-options") == "nosniff", where
    assert r.headers.get("referrer-policy") in ("same-origin", "no-referrer"), where
    assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), where


def check_html(client: TestClient, r: Any, where: str) -> None:
    """An HTML page: the headers, and markup that works under its own CSP."""
    check_headers(r, where)
    csp = csp_parts(r.headers["content-security-policy"])
    assert csp["default-src"] == "default-src 'none'" and "base-uri" in csp and "form-action" in csp, where
    assert not INLINE_SCRIPT.search(r.text), f"{where}: inline <script> (move it to web/static/)"
    assert not EVENT_ATTRIBUTE.search(r.text), f"{where}: an on...= attribute (it would not run under the CSP)"
    assert "javascript:" not in r.text.lower(), where
    scripts = SCRIPT_SRC.findall(r.text)
    # Scripts, where allowed at all, come from this origin only: never inline, never eval, never elsewhere.
    assert csp.get("script-src", "script-src 'self'") == "script-src 'self'", where
    if scripts:
        assert "script-src" in csp, where
    for src in scripts:
        assert src.startswith(("/static/", "/dashboard/assets/")), where
        js = client.get(src)
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript"), src
        check_headers(js, src)


@pytest.fixture
def admin(client: TestClient, rt: Runtime) -> TestClient:
    add_staff(rt, "boss@clinic.example", "admin", PASSWORD)
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    data = {"email": "boss@clinic.example", "password": PASSWORD, "csrf_token": token.group(1)}
    assert client.post("/login", data=data, follow_redirects=False).status_code == 303
    return client


def test_every_page_has_the_headers_and_works_under_its_csp(admin: TestClient, rt: Runtime, auth: dict) -> None:
    """Every GET route of the app, as an admin with a patient and an escalation on file, answers with the
    framing, sniffing and referrer headers; each HTML page also passes the CSP checks above. The sign-in pages,
    the booking page and the 404 of an unknown static file are seen too."""
    r = admin.post("/api/triage", json=triage_body(answers={"weakness": True}), headers=auth)
    ids = {"pid": r.json()["patient_id"], "eid": r.json()["escalation_id"]}
    html_pages = 0
    for method, path, _ in every_route(admin.app):  # type: ignore[arg-type]
        if method != "GET":
            continue
        url = concrete(path, ids)
        if path == "/book/{token}":
            url = booking_svc.link(rt, ids["eid"]).removeprefix(rt.settings.server.public_url)
        r = admin.get(url, follow_redirects=False)
        assert r.status_code < 500, url
        if r.headers.get("content-type", "").startswith("text/html") and path not in DOCS:
            html_pages += 1
            check_html(admin, r, url)
        else:
            check_headers(r, url)
    with TestClient(admin.app) as stranger:  # type: ignore[arg-type]
        for url in ("/login", "/intake"):
            check_html(stranger, stranger.get(url), url)
        check_headers(stranger.get("/static/nothing.js"), "/static/nothing.js")
    assert html_pages >= 10


def test_booking_keeps_its_stricter_referrer_policy(client: TestClient, rt: Runtime, auth: dict) -> None:
    """The booking page's URL is a token: it keeps no-referrer (the default would be same-origin)."""
    r = client.post("/api/triage", json=triage_body(answers={"weakness": True}), headers=auth)
    page = client.get(booking_svc.link(rt, r.json()["escalation_id"]).removeprefix(rt.settings.server.public_url))
    assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"


def test_answers_from_the_limits_have_the_headers_too(rt: Runtime) -> None:
    """The 413 of the body limit and the 429 page of the intake limit, made before any route, carry the headers."""
    app = create_app(runtime=rt, background=False)
    with TestClient(app) as c:
        big = c.post("/api/triage", content=b"x" * (rt.settings.server.max_body_bytes + 1))
        assert big.status_code == 413
        check_headers(big, "413")
        busy = None
        for _ in range(rt.settings.limits.intake_per_minute + 1):
            busy = c.post("/intake", data={"name": "x"})
        assert busy is not None and busy.status_code == 429
        check_html(c, busy, "intake 429")


@pytest.mark.parametrize("path", ["/login", "/intake"])
def test_public_forms_cannot_be_framed(client: TestClient, path: str) -> None:
    """The two public forms the probe framed from another origin now forbid it both ways browsers understand."""
    r = client.get(path)
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_docs_pages_run_their_cdn_scripts_only_in_development(db_url: str) -> None:
    """In development the API docs keep working (their CSP allows their CDN) and still cannot be framed."""
    runtime = build_runtime(make_settings(db_url))
    try:
        with TestClient(create_app(runtime=runtime, background=False)) as c:
            r = c.get("/docs")
            csp = csp_parts(r.headers["content-security-policy"])
            assert "https://cdn.jsdelivr.net" in csp["script-src"] and "frame-ancestors 'none'" in csp.values()
    finally:
        runtime.db.dispose()
