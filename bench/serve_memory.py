"""The service's memory on a big database: RSS of one `followup serve --no-dispatch` process at rest, then after
each dashboard page and API read, `--rounds` times each, on a database kept by `bench/scale_db.py --build-only`.

    .venv/bin/python bench/serve_memory.py --url postgresql+psycopg://postgres@127.0.0.1:5432/followup_scale_...

It adds a staff account and an API token to that database (a throwaway one), starts the server on `--port`, and
prints one JSON line, last: the RSS (and its peak, VmHWM) in MB after start and after each round, and the status of
every request.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def env_for(url: str) -> dict[str, str]:
    return {**os.environ, "FOLLOWUP_DATABASE__URL": url, "FOLLOWUP_SECURITY__SECRET_KEY": "bench-" + "k" * 40}


def rss_mb(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    got = {k: float(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in status) if k in ("VmRSS", "VmHWM")}
    return {"rss_mb": round(got["VmRSS"], 1), "peak_mb": round(got["VmHWM"], 1)}


def credentials(url: str) -> tuple[str, str]:
    """A staff session cookie and an API token, written through the services."""
    os.environ.update(env_for(url))
    from followup.runtime import build_runtime
    from followup.services import staff, tokens
    from followup.settings import load_settings

    rt = build_runtime(load_settings(ROOT / "settings.toml"))
    user = staff.add_staff(rt, f"mem-{secrets.token_hex(4)}@clinic.example", "clinician", secrets.token_urlsafe(24))
    cookie = staff.start_session(rt, user)
    _, token = tokens.create_token(rt, "serve-memory")
    rt.db.dispose()
    return cookie, token


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--port", type=int, default=8471)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cookie, token = credentials(args.url)
    with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=120) as c:
        c.cookies.set("followup_staff", cookie)
        api = {"Authorization": f"Bearer {token}"}
        proc = subprocess.Popen(  # noqa: S603
            [str(ROOT / ".venv/bin/followup"), "serve", "--no-dispatch", "--no-migrate", "--port", str(args.port)],
            cwd=ROOT,
            env=env_for(args.url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            for _ in range(600):
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.5)
            time.sleep(2)
            out: dict[str, Any] = {"at_start": rss_mb(proc.pid), "rounds": [], "statuses": {}}
            first = c.get("/api/patients?limit=1", headers=api).json()["patients"][0]["id"]
            esc_id = c.get("/api/escalations?limit=1", headers=api).json()[0]["id"]
            paths = [
                ("/dashboard", None),
                ("/dashboard/overview", None),
                ("/dashboard/patients", None),
                ("/dashboard/patients?q=pat1234", None),
                ("/dashboard/patients?q=5551234", None),
                ("/dashboard/patients?status=not_responding", None),
                ("/dashboard/patients?status=unreachable", None),
                (f"/dashboard/patients/{first}", None),
                ("/dashboard/visits", None),
                (f"/dashboard/escalations/{esc_id}", None),
                ("/api/patients?limit=50", api),
                (f"/api/patients/{first}", api),
                ("/api/escalations?limit=100", api),
                (f"/api/escalations/{esc_id}", api),
            ]
            for _ in range(args.rounds):
                for path, headers in paths:
                    r = c.get(path, headers=headers, follow_redirects=False)
                    out["statuses"].setdefault(path, set()).add(r.status_code)
                out["rounds"].append(rss_mb(proc.pid))
            out["statuses"] = {k: sorted(v) for k, v in out["statuses"].items()}
        finally:
            proc.terminate()
            proc.wait(30)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
