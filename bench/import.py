"""Bulk enrollment: `followup import` of N patients, each with all of its program rows, then the same file again.

    .venv/bin/python bench/import.py                      # 100,000 patients on a throwaway PostgreSQL database
    .venv/bin/python bench/import.py --n 5000 --db sqlite

Writes an NDJSON file of N valid triages (varied answers, so the programs differ; no red flag: a red-flag row is
triaged on its own, as the API does, and is not what this measures), runs `followup import` on it in a subprocess,
then reruns it. The rate is the command's own (rows checked and enrolled, per second of the import, start-up and
migrations excluded). The database is created and dropped (FOLLOWUP_BENCH_POSTGRES_URL or
FOLLOWUP_TEST_POSTGRES_URL names the server). Prints one JSON line, last.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import ROOT, database, emit
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from followup.core.triage import RED_FLAG_QUESTIONS
from followup.simulator.cohort import email_of, phone_of

ZONES = ["America/Los_Angeles", "America/Chicago", "America/New_York", "America/Denver", "Pacific/Honolulu"]
SUMMARY = re.compile(r"enrolled (\d+), escalated (\d+), already (\d+), rejected (\d+) \((\d+) rows in ([\d.]+) s")


def write_rows(path: Path, n: int, seed: int) -> None:
    rnd = random.Random(seed)  # noqa: S311 - synthetic patients, reproducible by seed
    with path.open("w") as fh:
        for i in range(n):
            sms = rnd.random() < 0.8
            body = {
                "external_id": f"MRN-{i:08d}",
                "name": f"Patient {i}",
                "phone": phone_of(i),
                "email": email_of(i) if not sms or rnd.random() < 0.5 else None,
                "channel": "sms" if sms else "email",
                "timezone": rnd.choice(ZONES),
                "language": "es" if rnd.random() < 0.2 else "en",
                "consent": True,
                "answers": {
                    "onset_weeks": rnd.randint(0, 3),
                    "locations": rnd.sample(["calf", "eyelid", "thigh", "arm", "foot"], rnd.randint(1, 3)),
                    **dict.fromkeys(RED_FLAG_QUESTIONS, False),
                    "caffeine_per_day": rnd.randint(0, 8),
                    "sleep_hours": rnd.choice([5, 6, 7, 8]),
                    "stress": rnd.randint(0, 10),
                    "water_glasses": rnd.randint(1, 10),
                    "intense_exercise": rnd.random() < 0.3,
                    "alcohol_per_week": rnd.randint(0, 10),
                },
            }
            fh.write(json.dumps(body) + "\n")


class BackendCpu:
    """CPU seconds used by the PostgreSQL backends serving one database, sampled from /proc while they live (the
    server is on this machine): with the importer's own CPU time, what the work costs whatever the load."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT")  # pg_stat_activity: fresh each query
        self.name = make_url(url).database if url.startswith("postgresql") else None
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        with self.engine.connect() as c:
            me = c.execute(text("SELECT pg_backend_pid()")).scalar_one()
            while not self.stop.wait(0.5):
                pids = c.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> :me"),
                    {"d": self.name, "me": me},
                ).scalars()
                for pid in pids:
                    try:
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    self.seen[pid] = (int(fields[11]) + int(fields[12])) / tick

    def __enter__(self) -> BackendCpu:
        if self.name:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.name:
            self.thread.join()
        self.engine.dispose()

    @property
    def seconds(self) -> float:
        return sum(self.seen.values())


def run_import(url: str, path: Path, chunk: int, startup_cpu: float = 0.0) -> dict[str, Any]:
    env = {**os.environ, "FOLLOWUP_DATABASE__URL": url, "FOLLOWUP_SECURITY__SECRET_KEY": "bench-" + "k" * 40}
    cmd = [sys.executable, "-m", "followup.cli", "import", str(path), "--chunk", str(chunk), "--no-migrate"]
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with BackendCpu(url) as backends:
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - started
    importer_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    m = SUMMARY.search(out.stdout)
    if m is None:
        raise SystemExit(f"import failed ({out.returncode}): {out.stderr[-2000:]}")
    enrolled, escalated, already, rejected, rows = (int(m[i]) for i in range(1, 6))
    seconds = float(m[6])
    return {
        "enrolled": enrolled,
        "escalated": escalated,
        "already": already,
        "rejected": rejected,
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": round(rows / seconds, 1) if seconds else 0.0,
        "wall_seconds": round(wall, 1),
        # CPU per row: the importer (its start-up, measured on an empty file, taken off) and the database server's
        # backends (sampled every 0.5 s)
        "importer_cpu_s": round(importer_cpu, 2),
        "importer_cpu_ms_per_row": round(1000 * (importer_cpu - startup_cpu) / max(rows, 1), 3),
        "postgres_cpu_ms_per_row": round(1000 * backends.seconds / max(rows, 1), 3) if backends.name else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="patients (default 100,000)")
    ap.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    ap.add_argument("--chunk", type=int, default=500, help="rows per transaction")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="followup-import-") as tmp, database(args.db) as url:
        path = Path(tmp) / "patients.ndjson"
        write_rows(path, args.n, args.seed)
        empty = Path(tmp) / "empty.ndjson"
        empty.write_text("")
        startup = run_import(url, empty, args.chunk)["importer_cpu_s"]  # the command's start-up, taken off below
        first = run_import(url, path, args.chunk, startup)
        again = run_import(url, path, args.chunk, startup)
        engine = create_engine(url)
        with engine.connect() as c:
            patients = c.execute(text("SELECT count(*), count(DISTINCT external_id) FROM patient")).one()
            messages = c.execute(text("SELECT count(*) FROM message")).scalar_one()
            triages = c.execute(text("SELECT count(*) FROM triage")).scalar_one()
        engine.dispose()
    cpu = first["importer_cpu_ms_per_row"] + (first["postgres_cpu_ms_per_row"] or 0)
    print(
        f"CPU per patient: importer {first['importer_cpu_ms_per_row']} ms, "
        f"PostgreSQL {first['postgres_cpu_ms_per_row']} ms "
        f"(two idle cores: between {1000 / cpu:,.0f} and {1000 / max(first['importer_cpu_ms_per_row'], 0.001):,.0f} "
        "patients/s); load average now " + ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        file=sys.stderr,
    )
    print(
        f"{args.db}: {first['enrolled']:,} patients with {messages:,} program rows in {first['seconds']} s = "
        f"{first['enrolled'] / first['seconds']:,.0f} patients/s; rerun: {again['enrolled']} enrolled, "
        f"{again['already']:,} already ({again['rows_per_s']:,.0f} rows/s)",
        file=sys.stderr,
    )
    emit(
        {
            "bench": "import",
            "db": args.db,
            "n": args.n,
            "chunk": args.chunk,
            "patients_per_s": round(first["enrolled"] / first["seconds"], 1),
            "first": first,
            "rerun": again,
            "patients": patients[0],
            "distinct_external_ids": patients[1],
            "triages": triages,
            "program_rows": messages,
            "rows_per_patient": round(messages / max(patients[0], 1), 2),
            "loadavg": [round(x, 1) for x in os.getloadavg()],
        }
    )


if __name__ == "__main__":
    main()
