"""A staff-login flood against the real app under uvicorn, in its own process: the server's memory and /healthz.

    .venv/bin/python bench/login_flood.py [--concurrency 32] [--seconds 15] [--slots 2] [--addresses many|one]

32 threads (in a process of their own, at nice 10: real attackers are not on the server's CPU) post wrong
passwords to /login as fast as they are answered, for `--seconds`, each attempt for an
unknown email (the "anonymous" attempts of issue 11, each an argon2id check of 64 MiB). `--addresses many` gives
each attempt its own client address (X-Forwarded-For, trusted from 127.0.0.1 as behind a proxy), so no per-address
back-off hides the hashing: what bounds memory is `security.password_hash_slots` alone. `--addresses one` is a
single attacker, which the back-off slows as well. Meanwhile /healthz is asked every 100 ms.

Prints one JSON line, last: the server's resting RSS, its peak RSS (VmHWM) and the most sampled during the flood,
/healthz p50/p99/max, and the login answers by status. `--slots 32` lets every attempt hash at once (as before the
bound: nothing stops 32 concurrent hashes), for comparison.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from _common import ROOT, database, emit

from followup.settings import Settings


def settings_for(url: str, port: int, slots: int) -> Settings:
    return Settings().with_overrides(
        server={"public_url": f"http://127.0.0.1:{port}"},
        database={"url": url},
        clinic={
            "program": ROOT / "clinic/program.toml",
            "red_flags": ROOT / "clinic/red_flags.toml",
            "intake_rules": ROOT / "clinic/intake.toml",
            "keywords": ROOT / "clinic/keywords.toml",
            "templates": ROOT / "templates",
            "oncall_sms": ["+13105550199"],
        },
        security={"secret_key": "bench-login-flood-9f3c2a71e4d8b6c05a1f7e3d9b2c4a68", "password_hash_slots": slots},
    )


def serve(url: str, port: int, slots: int) -> None:
    import uvicorn

    from followup.web.app import create_app

    app = create_app(settings_for(url, port, slots), background=False)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else 0


def wait_up(base: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not start")


def run(args: argparse.Namespace, url: str) -> dict[str, object]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, __file__, "--serve", url, str(port), str(args.slots)]
    proc = subprocess.Popen(cmd, cwd=ROOT)  # noqa: S603 - this script, as the server
    try:
        wait_up(base)
        for _ in range(20):  # warm up: templates, the first argon2 check, the database pool
            httpx.get(f"{base}/login")
            httpx.get(f"{base}/healthz")
        time.sleep(1)
        resting = rss_kib(proc.pid)
        quiet = []  # /healthz before the flood: what the machine's own load costs
        with httpx.Client(base_url=base, timeout=60) as c:
            for _ in range(30):
                t0 = time.perf_counter()
                c.get("/healthz")
                quiet.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.1)
        quiet.sort()
        stop = time.monotonic() + args.seconds
        sampled = [resting]
        health: list[float] = []
        attack = [sys.executable, __file__, "--attack", base, str(args.seconds), str(args.concurrency), args.addresses]
        attackers = subprocess.Popen(attack, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603

        def sampler() -> None:
            while time.monotonic() < stop + 1:
                sampled.append(rss_kib(proc.pid))
                time.sleep(0.02)

        def prober() -> None:
            with httpx.Client(base_url=base, timeout=60) as c:
                time.sleep(0.5)  # let the flood build up first
                while time.monotonic() < stop:
                    t0 = time.perf_counter()
                    c.get("/healthz")
                    health.append((time.perf_counter() - t0) * 1000)
                    time.sleep(0.1)

        threads = [threading.Thread(target=sampler), threading.Thread(target=prober)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out, _ = attackers.communicate(timeout=120)
        statuses = {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}
        peak = rss_kib(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    health.sort()
    return {
        "slots": args.slots,
        "addresses": args.addresses,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "resting_rss_mib": round(resting / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "most_sampled_rss_mib": round(max(sampled) / 1024, 1),
        "healthz_before_flood_ms": {"p50": round(statistics.median(quiet), 1), "max": round(quiet[-1], 1)},
        "healthz_ms": {
            "n": len(health),
            "p50": round(statistics.median(health), 1),
            "p90": round(health[int(len(health) * 0.9)], 1),
            "p99": round(health[min(len(health) - 1, int(len(health) * 0.99))], 1),
            "max": round(health[-1], 1),
        },
        "login_answers": dict(sorted(statuses.items())),
        "logins_per_s": round(sum(statuses.values()) / args.seconds, 1),
    }


def attack(base: str, seconds: float, concurrency: int, addresses: str) -> None:
    """The attackers, in a process of their own at lower CPU priority: on a real server they would be elsewhere,
    not sharing its two cores. Prints the answers by status as one JSON line."""
    os.nice(10)
    stop = time.monotonic() + seconds
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    counter = itertools.count(1)

    def attacker() -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            page = c.get("/login").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', page)
            assert token is not None
            while time.monotonic() < stop:
                n = next(counter)
                address = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}" if addresses == "many" else "10.9.9.9"
                data = {
                    "email": f"nobody{n}@clinic.example",
                    "password": f"guess {n}!!!!",
                    "csrf_token": token.group(1),
                }
                r = c.post("/login", data=data, headers={"X-Forwarded-For": address})
                with lock:
                    statuses[r.status_code] += 1

    threads = [threading.Thread(target=attacker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(statuses), flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--attack":
        attack(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--slots", type=int, default=2, help="security.password_hash_slots for the server")
    parser.add_argument("--addresses", choices=["many", "one"], default="many")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with database(args.db) as url:
        emit(run(args, url))


if __name__ == "__main__":
    main()
