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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, database, emit
from sqlalchemy import create_engine, text

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
                    **dict.fromkeys(
                        [
                            "weakness",
                            "atrophy",
                            "daily_activities",
                            "speech_swallowing",
                            "breathing",
                            "numbness_tingling",
                            "balance",
                            "severe_cramps",
                        ],
                        False,
                    ),
                    "caffeine_per_day": rnd.randint(0, 8),
                    "sleep_hours": rnd.choice([5, 6, 7, 8]),
                    "stress": rnd.randint(0, 10),
                    "water_glasses": rnd.randint(1, 10),
                    "intense_exercise": rnd.random() < 0.3,
                    "alcohol_per_week": rnd.randint(0, 10),
                },
            }
            fh.write(json.dumps(body) + "\n")


def run_import(url: str, path: Path, chunk: int) -> dict[str, float]:
    env = {**os.environ, "FOLLOWUP_DATABASE__URL": url, "FOLLOWUP_SECURITY__SECRET_KEY": "bench-" + "k" * 40}
    cmd = [sys.executable, "-m", "followup.cli", "import", str(path), "--chunk", str(chunk), "--no-migrate"]
    started = time.monotonic()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    wall = time.monotonic() - started
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
        "rows_per_s": round(rows / seconds, 1),
        "wall_seconds": round(wall, 1),
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
        first = run_import(url, path, args.chunk)
        again = run_import(url, path, args.chunk)
        engine = create_engine(url)
        with engine.connect() as c:
            patients = c.execute(text("SELECT count(*), count(DISTINCT external_id) FROM patient")).one()
            messages = c.execute(text("SELECT count(*) FROM message")).scalar_one()
            triages = c.execute(text("SELECT count(*) FROM triage")).scalar_one()
        engine.dispose()
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
        }
    )


if __name__ == "__main__":
    main()
