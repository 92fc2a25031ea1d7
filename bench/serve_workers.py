"""`followup serve --workers N`: requests/s of an authenticated read (GET /api/patients?limit=1 with a bearer token:
the token lookup and one query) with N = 1 and N = 2 web processes, PostgreSQL, no dispatcher in them.

    .venv/bin/python bench/serve_workers.py [--workers 1,2] [--seconds 10] [--concurrency 16]

Each N: `followup serve --workers N --no-dispatch` in its own process tree on a throwaway PostgreSQL database, a
warm-up, then a closed loop of `--concurrency` client threads for `--seconds` (bounded; loopback only). The load
generator runs on the same two cores as the servers. Prints one JSON line, last.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
from _common import ROOT, database, emit

from followup.runtime import build_runtime
from followup.services.tokens import create_token
from followup.settings import load_settings

PATH = "/api/patients?limit=1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(url: str) -> dict[str, str]:
    return {**os.environ, "FOLLOWUP_DATABASE__URL": url, "FOLLOWUP_SECURITY__SECRET_KEY": "bench-" + "k" * 40}


def measure(url: str, token: str, workers: int, seconds: float, concurrency: int) -> dict[str, Any]:
    port = free_port()
    cmd = [sys.executable, "-m", "followup.cli", "serve", "--port", str(port), "--no-dispatch", "--no-migrate"]
    cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(  # noqa: S603 - our own command
        cmd, cwd=ROOT, env=env_for(url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + PATH, headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"serve --workers {workers} did not start")
            time.sleep(0.5)
        time.sleep(3 if workers > 1 else 0.5)  # every process up and warm
        latencies: list[float] = []
        errors = 0
        lock = threading.Lock()
        stop_at = time.perf_counter() + seconds

        def loop() -> None:
            nonlocal errors
            mine: list[float] = []
            bad = 0
            with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
                while time.perf_counter() < stop_at:
                    t = time.perf_counter()
                    ok = http.get(PATH).status_code == 200
                    mine.append(time.perf_counter() - t)
                    bad += not ok
            with lock:
                latencies.extend(mine)
                errors += bad

        started = time.perf_counter()
        threads = [threading.Thread(target=loop) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    q = statistics.quantiles(latencies, n=100)
    return {
        "workers": workers,
        "requests": len(latencies),
        "errors": errors,
        "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * q[49], 1),
        "p99_ms": round(1000 * q[98], 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2", help="comma-separated process counts")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    results = []
    with database("postgres") as url:
        settings = load_settings(ROOT / "settings.toml", env_for(url))
        rt = build_runtime(settings)
        token = create_token(rt, "bench")[1]
        rt.db.dispose()
        for n in (int(x) for x in args.workers.split(",")):
            results.append(measure(url, token, n, args.seconds, args.concurrency))
            print(f"workers={n}: {results[-1]}", file=sys.stderr)
    load = os.getloadavg()
    emit({"bench": "serve_workers", "path": PATH, "loadavg": [round(x, 1) for x in load], "results": results})


if __name__ == "__main__":
    main()
