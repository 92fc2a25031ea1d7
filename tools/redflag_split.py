"""The rule layer on the labelled corpus, split into a fixed training part and a held-out validation part.

    .venv/bin/python tools/redflag_split.py                 # figures per language, both splits
    .venv/bin/python tools/redflag_split.py --misses train  # and the training split's misses
    .venv/bin/python tools/redflag_split.py --both          # both layers, the model trained on the training split

The rule layer alone by default. `--both` trains a model on the training split (and the labelled test cases) in
memory, exactly as `followup redflags train` does but without the validation lines, and reads the validation split
with both layers combined as the service combines them: the only honest figure for the learned layer on the corpus
(the committed model is trained on every line). Embeddings are cached under var/ (the encoder is deterministic).
`--sweep` then prints the validation figures for other learned thresholds, from the same predictions.

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
from followup.redflags.combine import combine  # noqa: E402

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
    p.add_argument("--both", action="store_true", help="both layers, the model trained on the training split")
    p.add_argument("--sweep", action="store_true", help="with --both: validation figures at other thresholds")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="with --both: a [learned] setting")
    p.add_argument(
        "--validate",
        action="append",
        default=[],
        metavar="FILE",
        help="with --both: read only these corpus files' validation lines (a corpus change on the old lines)",
    )
    args = p.parse_args()
    if args.both:
        return both_layers(args)
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


class CachedEncoder:
    """The encoder with its sentence embeddings kept on disk between runs (USE is deterministic)."""

    def __init__(self, path: Path) -> None:
        import numpy as np

        from followup.redflags.learned.features import UseEncoder

        self._np = np
        self._inner = UseEncoder()
        self._path = path
        self._vec: dict[str, object] = {}
        if path.with_suffix(".json").exists():
            texts = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            vecs = np.load(path.with_suffix(".npy"))
            self._vec = dict(zip(texts, vecs, strict=True))
        self._dirty = False

    def encode(self, texts: list[str]):
        np = self._np
        missing = list(dict.fromkeys(t for t in texts if t not in self._vec))
        if missing:
            for t, v in zip(missing, self._inner.encode(missing), strict=True):
                self._vec[t] = v
            self._dirty = True
        return np.stack([self._vec[t] for t in texts]).astype(np.float32) if texts else np.zeros((0, 512), np.float32)

    def save(self) -> None:
        if not self._dirty:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        texts = list(self._vec)
        self._path.with_suffix(".json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        self._np.save(self._path.with_suffix(".npy"), self._np.stack([self._vec[t] for t in texts]))


def both_layers(args: argparse.Namespace) -> int:
    """Validation figures for both layers, with a model trained on the training split only."""
    import tomllib
    from dataclasses import replace

    from followup.redflags.learned import train as learn
    from followup.redflags.learned.artefact import loads
    from followup.redflags.learned.config import parse_learned
    from followup.redflags.learned.language import LanguageReader
    from followup.redflags.learned.model import LearnedModel
    from followup.redflags.screen import Screen

    settings = parse_learned(tomllib.loads(args.criteria.read_text(encoding="utf-8")).get("learned"), args.criteria)
    assert settings is not None
    for item in args.set:
        key, _, value = item.partition("=")
        settings = replace(settings, **{key: json.loads(value)})
    detector = Detector.from_file(args.criteria)
    tiers = {cid: c.tier for cid, c in detector.criteria.items()}
    parts = split(args.corpus)
    started = time.perf_counter()
    examples = []
    for r in parts["train"]:
        text = extract_reply(r["text"]) if r.get("channel") == "email" else r["text"]
        crit = tuple(r.get("criteria") or ())
        label = crit[0] if crit and r["level"] != "none" else "none"
        examples.append(learn.Example(text, r.get("lang", "en"), r["level"], label, r["_where"], crit))
    cases = [ROOT / "tests" / "redflag_cases.toml", ROOT / "tests" / "redflag_cases_es.toml"]
    examples += learn.load_examples(cases, labeller=lambda text: detector.assess(text).criteria)
    encoder = CachedEncoder(ROOT / "var" / "cache" / "redflag-embeddings")
    data = learn.embed(examples, tiers, encoder)
    header, arrays = loads(learn.artefact_bytes(examples, data, "split", 0, tiers))
    model = LearnedModel(header, arrays, tiers, settings, encoder)
    languages = LanguageReader.from_settings(settings)
    screen = Screen(detector, settings, model, languages)
    rows = [r for r in parts["validation"] if not args.validate or r["_where"].split(":")[0] in args.validate]
    read = []
    for r in rows:
        text = extract_reply(r["text"]) if r.get("channel") == "email" else r["text"]
        rules_verdict, prediction, language = screen.read(text)
        read.append((r, text, rules_verdict, prediction, language, screen.assess(text)))
    encoder.save()
    print(f"trained on {len(examples)} examples, read {len(rows)} in {time.perf_counter() - started:.0f}s")

    def report(verdicts: list, title: str) -> None:
        print(title)
        for lang in ("en", "es"):
            sel = [(x[0], v) for x, v in zip(read, verdicts, strict=True) if x[0]["lang"] == lang]
            figs = figures([r for r, _ in sel], [v.level for _, v in sel])
            esc = [(r, v) for r, v in sel if r["level"] != "none"]
            wrong = sum(v.level != r["level"] for r, v in esc)
            figs["escalations at the wrong level"] = (wrong, len(esc))
            shown = ", ".join(f"{k} {a / max(b, 1):.3f} ({a}/{b})" for k, (a, b) in figs.items())
            print(f"  {lang}: {shown}")
            alarms = [v for r, v in sel if r["level"] == "none" and v.level != "none"]
            kinds: dict[str, int] = {}
            for v in alarms:
                k = f"{v.layer}:{'review' if v.review else v.level}"
                kinds[k] = kinds.get(k, 0) + 1
            print(f"      false alarms by layer: {dict(sorted(kinds.items()))}")
            pairs: dict[str, int] = {}
            for r, v in esc:
                if v.level != r["level"]:
                    key = f"{r['level']}->{v.level}" + (f"({v.layer})" if v.layer else "")
                    pairs[key] = pairs.get(key, 0) + 1
            print(f"      escalations at the wrong level: {dict(sorted(pairs.items()))}")
            raised = sum(
                1
                for x, v in zip(read, verdicts, strict=True)
                if x[0]["lang"] == lang
                and x[2].level == "red_flag"
                and v.level == "emergency"
                and x[0]["level"] != "emergency"
            )
            print(f"      red flags of the rules raised to emergency by the learned layer, wrongly: {raised}")
            missed = [(r, v) for r, v in esc if v.level == "none"]
            print(
                f"      escalations answered none: {len(missed)}; emergencies answered below emergency: "
                f"{sum(v.level != 'emergency' for r, v in esc if r['level'] == 'emergency')}"
            )

    report([x[5] for x in read], "validation, both layers (as the service reads them)")
    if args.sweep:
        grid = [{"review_at": ra} for ra in (0.15, 0.25, 0.3)]
        grid += [{"emergency_at": ea} for ea in (0.25, 0.4, 0.5)]
        grid += [{"nearest_emergency_at": ne} for ne in (0.1, 0.3, 1.0)]
        grid += [{"raise_at": ra} for ra in (0.6, 0.7, 0.8, 0.9)]
        for g in grid:
            s2 = replace(settings, **g)
            verdicts = [
                combine(rv, pr, lg, s2, tiers) if pr is not None else x[5]
                for x in read
                for (rv, pr, lg) in [(x[2], x[3], x[4])]
            ]
            report(verdicts, f"sweep {g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
