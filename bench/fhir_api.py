"""FHIR: what a transaction Bundle costs against the same triage through POST /api/triage, what a replay costs,
and whether a search page costs the same at the start and deep in the results (keyset paging).

In-process (FastAPI's TestClient, no network), real database, real services. Measures; asserts nothing. Prints
one JSON line, last.

    .venv/bin/python bench/fhir_api.py [--db sqlite|postgres] [--patients 300]

(Not bench/fhir.py: a script of that name would shadow the `fhir` package of fhir.resources.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, database, emit, factories
from fastapi.testclient import TestClient
from test_fhir import bundle

from followup.runtime import build_runtime
from followup.services.tokens import create_token
from followup.settings import Settings
from followup.transports.recording import RecordingTransport
from followup.web.app import create_app


def settings_for(url: str) -> Settings:
    return Settings().with_overrides(
        database={"url": url},
        clinic={
            "program": ROOT / "clinic/program.toml",
            "red_flags": ROOT / "clinic/red_flags.toml",
            "intake_rules": ROOT / "clinic/intake.toml",
            "keywords": ROOT / "clinic/keywords.toml",
            "templates": ROOT / "templates",
            "oncall_sms": ["+13105550199"],
        },
        security={"secret_key": "bench-" + "k" * 40},
    )


def ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
    }


def timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


AREAS = (310, 213, 424, 323, 818, 626, 562, 714, 949, 805, 415, 650, 408, 510, 925, 707)


def phone(n: int) -> str:
    """A distinct valid number for each n under 1,600 (the fictional 555-01xx range, area by area)."""
    return f"+1 {AREAS[n // 100 % len(AREAS)]} 555 01{n % 100:02d}"


def run(kind: str, patients: int) -> dict[str, Any]:
    with database(kind) as url:
        sms, email = RecordingTransport("sms"), RecordingTransport("email")
        rt = build_runtime(settings_for(url), transports={"sms": sms, "email": email})
        auth = {"Authorization": f"Bearer {create_token(rt, 'bench')[1]}"}
        with TestClient(create_app(runtime=rt, background=False)) as c:
            c.post("/fhir", json=bundle(mrn="warm", phone="+1 213 555 0100", email=None), headers=auth)  # warm-up
            rt.detector  # noqa: B018 - loaded before the clock starts, as in a running service
            fhir, replay, api = [], [], []
            for n in range(patients):
                body = bundle(mrn=f"b{n}", phone=phone(n), email=None)
                dt, r = timed(lambda body=body: c.post("/fhir", json=body, headers=auth))
                assert r.status_code == 200, r.text
                fhir.append(dt)
                dt, r = timed(lambda body=body: c.post("/fhir", json=body, headers=auth))
                replay.append(dt)
                triage = factories.triage_body(phone=phone(n + 800), email=None)
                dt, r = timed(lambda triage=triage: c.post("/api/triage", json=triage, headers=auth))
                assert r.status_code == 201, r.text
                api.append(dt)
            pages, url_ = [], "/fhir/Communication?_count=100"
            while url_:
                dt, r = timed(lambda u=url_: c.get(u, headers=auth))
                pages.append(dt)
                nxt = [link["url"] for link in r.json().get("link", []) if link["relation"] == "next"]
                url_ = nxt[0].removeprefix(rt.settings.server.public_url) if nxt else ""
        rt.db.dispose()
    first, deep = pages[: max(1, len(pages) // 5)], pages[-max(1, len(pages) // 5) :]
    return {
        "db": kind,
        "patients": patients,
        "fhir_transaction": ms(fhir),
        "api_triage": ms(api),
        "fhir_over_api_p50": round(statistics.median(fhir) / statistics.median(api), 2),
        "fhir_replay": ms(replay),
        "communication_pages": len(pages),
        "first_fifth_page": ms(first),
        "last_fifth_page": ms(deep),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--patients", type=int, default=300, help="at most 800")
    args = p.parse_args()
    emit(run(args.db, args.patients))


if __name__ == "__main__":
    main()
