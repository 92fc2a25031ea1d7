"""The rule layer on the labelled corpus, split into a fixed training part and a held-out validation part.

    .venv/bin/python tools/redflag_split.py                 # figures per language, both splits
    .venv/bin/python tools/redflag_split.py --misses train  # and the training split's misses

The split is seeded and fixed: 30% of the lines of every corpus file (clinic/corpus/*.jsonl) are validation. Rules
are written from the training split's misses only; the validation split is only ever counted, never listed
(`--misses validation` is refused), so its figures stay an honest estimate for replies the rules never saw.

Emails are read as `followup check --channel email` reads them: quoted history and signature removed first.
Figures: escalation recall (emergency and red_flag replies answered emergency or red_flag), emergency recall
(emergency replies answered emergency) and specificity (none replies answered none).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from followup.parsing.mailtext import extract_reply  # noqa: E402
from followup.redflags import Detector  # noqa: E402

SEED = 20261202
VALIDATION_SHARE = 0.30


def split(corpus: Path) -> dict[str, list[dict]]:
    """{"train": [...], "validation": [...]}: a seeded 30% of each file's lines is validation."""
    out: dict[str, list[dict]] = {"train": [], "validation": []}
    for path in sorted(corpus.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        order = list(range(len(rows)))
        random.Random(f"{SEED}:{path.name}").shuffle(order)  # noqa: S311 - a reproducible split, not a secret
        held = set(order[: round(len(rows) * VALIDATION_SHARE)])
        for i, row in enumerate(rows):
            row["_where"] = f"{path.name}:{i + 1}"
            out["validation" if i in held else "train"].append(row)
    return out


def figures(rows: list[dict], levels: list[str]) -> dict[str, tuple[int, int]]:
    esc = [(r, p) for r, p in zip(rows, levels, strict=True) if r["level"] in ("emergency", "red_flag")]
    em = [(r, p) for r, p in zip(rows, levels, strict=True) if r["level"] == "emergency"]
    no = [(r, p) for r, p in zip(rows, levels, strict=True) if r["level"] == "none"]
    return {
        "escalation recall": (sum(p != "none" for _, p in esc), len(esc)),
        "emergency recall": (sum(p == "emergency" for _, p in em), len(em)),
        "specificity": (sum(p == "none" for _, p in no), len(no)),
        "off-level": (sum(p != r["level"] for r, p in zip(rows, levels, strict=True)), len(rows)),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=ROOT / "clinic" / "corpus")
    p.add_argument("--criteria", type=Path, default=ROOT / "clinic" / "red_flags.toml")
    p.add_argument("--misses", choices=["train", "validation"])
    p.add_argument("--lang", choices=["en", "es"])
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    p.add_argument("--only", choices=["train", "validation"], help="read one split only")
    args = p.parse_args()
    if args.misses == "validation":
        print("the validation split is counted, never listed: write rules from the training split's misses")
        return 2
    detector = Detector.from_file(args.criteria)
    parts = split(args.corpus)
    report: dict[str, dict[str, dict[str, tuple[int, int]]]] = {}
    started = time.perf_counter()
    n = 0
    for name, rows in parts.items():
        if args.only and name != args.only:
            continue
        levels = []
        for r in rows:
            text = extract_reply(r["text"]) if r.get("channel") == "email" else r["text"]
            verdict = detector.assess(text)
            levels.append(verdict.level)
            n += 1
            if args.misses == name and verdict.level != r["level"] and (not args.lang or r["lang"] == args.lang):
                got = ",".join(verdict.criteria) or "-"
                want = ",".join(r["criteria"]) or r.get("near") or "-"
                print(f"MISS {r['_where']} {r['lang']} gold={r['level']}({want}) got={verdict.level}({got}): {text!r}")
        report[name] = {}
        for lang in ("en", "es"):
            sel = [(r, lv) for r, lv in zip(rows, levels, strict=True) if r["lang"] == lang]
            report[name][lang] = figures([r for r, _ in sel], [lv for _, lv in sel])
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps(report))
        return 0
    for name, langs in report.items():
        for lang, figs in langs.items():
            shown = ", ".join(f"{k} {a / max(b, 1):.3f} ({a}/{b})" for k, (a, b) in figs.items())
            print(f"{name:10s} {lang}: {shown}")
    print(f"{n} replies in {elapsed:.1f}s ({n / elapsed:.0f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
