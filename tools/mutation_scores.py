"""Per-module mutation scores from mutmut's results in mutants/: killed / (total - skipped), one line a module.

Run by `make mutate` after `mutmut run`. Exits 1 when a module that was run scores under --min (percent).
Timeouts count as killed (the mutant made a test hang, which a test run notices); "no tests" and "suspicious"
count as survivors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def scores(root: Path) -> dict[str, Counter[str]]:
    """Status counts by module, read from mutmut's .meta files under `root` (the mutants/ directory)."""
    out: dict[str, Counter[str]] = {}
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        out[str(meta.relative_to(root)).removesuffix(".meta")] = Counter(status_by_exit_code[c] for c in codes.values())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--min", type=float, default=0.0, help="fail when a module that was run scores below this")
    args = parser.parse_args()
    failed = []
    print(f"{'module':34} {'score':>7} {'killed':>7} {'survived':>8} {'no tests':>8} {'skipped':>7} {'total':>6}")
    for module, c in scores(args.mutants).items():
        total, skipped, not_checked = c.total(), c["skipped"], c["not checked"]
        killed = sum(c[s] for s in KILLED)
        if total == 0:  # nothing to mutate (a package __init__)
            continue
        if not_checked == total:
            print(f"{module:34} {'not run':>7}")
            continue
        score = 100 * killed / (total - skipped - not_checked) if total - skipped - not_checked else 100.0
        survived = total - skipped - not_checked - killed - c["no tests"]
        note = f"  ({not_checked} not run)" if not_checked else ""
        print(f"{module:34} {score:6.1f}% {killed:7} {survived:8} {c['no tests']:8} {skipped:7} {total:6}{note}")
        if score < args.min:
            failed.append(module)
    if failed:
        print(f"under {args.min:g}%: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
