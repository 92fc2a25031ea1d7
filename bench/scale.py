"""`followup simulate` at growing cohorts over 30 days: wall time per patient should stay flat (within 20%) and
peak memory should not grow with the cohort. Each size runs in its own process, one after the other.

    .venv/bin/python bench/scale.py --sizes 1000,10000,100000 [--days 30]

Prints one line per size as it finishes, then one JSON line, last.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import ROOT, emit

INVARIANTS = ("quiet_hour_violations", "duplicate_sends", "missed_escalations", "lost_messages")


def run(patients: int, days: int, seed: int) -> dict[str, object]:
    cmd = [
        sys.executable,
        "-m",
        "followup.cli",
        "simulate",
        "--patients",
        str(patients),
        "--days",
        str(days),
        "--seed",
        str(seed),
        "--json",
        "--no-progress",
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)  # noqa: S603 - our own CLI
    if out.returncode not in (0, 1):
        raise RuntimeError(f"simulate failed ({out.returncode}): {out.stderr[-2000:]}")
    s = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "patients": patients,
        "messages_sent": s["messages_sent"],
        "wall_seconds": s["wall_seconds"],
        "wall_ms_per_patient": s["wall_ms_per_patient"],
        "peak_rss_mb": s["peak_rss_mb"],
        "invariants": {k: s[k] for k in INVARIANTS},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        rows.append(run(n, args.days, args.seed))
        print(json.dumps(rows[-1]), flush=True)
    per = [float(r["wall_ms_per_patient"]) for r in rows]  # type: ignore[arg-type]
    rss = [float(r["peak_rss_mb"]) for r in rows]  # type: ignore[arg-type]
    emit(
        {
            "bench": "scale",
            "days": args.days,
            "runs": rows,
            "ms_per_patient_spread": round(max(per) / min(per) - 1, 3),
            "flat_within_20pct": max(per) <= 1.2 * min(per),
            "peak_rss_growth": round(max(rss) / min(rss) - 1, 3),
            "all_invariants_zero": all(not any(r["invariants"].values()) for r in rows),  # type: ignore[attr-defined]
        }
    )


if __name__ == "__main__":
    main()
