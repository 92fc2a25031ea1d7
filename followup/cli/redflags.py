"""`followup redflags`: train the learned layer from the labelled corpus, and evaluate the detector on a file.

followup redflags train                 # writes the artefact and its sha256 into clinic/red_flags.toml
followup redflags eval FILE.jsonl       # recall, emergency recall, specificity per language, tier, criterion
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import click

from followup.cli._common import settings_of

DEFAULT_CASES = ("tests/redflag_cases.toml", "tests/redflag_cases_es.toml")
_SHA_LINE = re.compile(r'^(sha256\s*=\s*)"[0-9a-f]*"', re.MULTILINE)


@click.group()
def redflags() -> None:
    """The red-flag detector's learned layer: train it, evaluate the detector."""


@redflags.command()
@click.option("--corpus", type=click.Path(path_type=Path, file_okay=False), default=Path("clinic/corpus"))
@click.option("--cases", type=click.Path(path_type=Path, dir_okay=False), multiple=True, default=DEFAULT_CASES)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--folds", type=int, default=5, show_default=True, help="Cross-validation folds (0: none).")
@click.option("--criteria", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.pass_context
def train(
    ctx: click.Context, corpus: Path, cases: tuple[Path, ...], seed: int, folds: int, criteria: Path | None
) -> None:
    """Train the learned layer from the corpus (and the labelled test cases), print cross-validated figures per
    language, write the artefact named in [learned] artefact and pin its sha256 in the criteria file."""
    import tomllib

    from followup.redflags import Detector
    from followup.redflags.learned import train as learn
    from followup.redflags.learned.artefact import sha256_of
    from followup.redflags.learned.config import parse_learned
    from followup.redflags.learned.features import UseEncoder
    from followup.redflags.load import load_rulebook

    path = criteria or settings_of(ctx).clinic.red_flags
    book = load_rulebook(path)
    settings = parse_learned(tomllib.loads(path.read_text(encoding="utf-8")).get("learned"), path)
    if settings is None:
        raise click.ClickException(f"{path}: no [learned] table (artefact, sha256) to train for")
    tiers = {cid: c.tier for cid, c in book.criteria.items()}
    files = learn.corpus_files(corpus, list(cases))
    rules = Detector(book)
    examples = learn.load_examples(files, labeller=lambda text: rules.assess(text).criteria)
    click.echo(f"{len(examples)} examples from {len(files)} files; embedding...", err=True)
    started = time.perf_counter()
    data = learn.embed(examples, tiers, UseEncoder())
    click.echo(f"embedded in {time.perf_counter() - started:.0f} s", err=True)
    if folds:
        click.echo(f"{folds}-fold cross-validation, learned layer alone (flag at {settings.flag_at}):")
        for f in learn.cross_validate(
            examples,
            data,
            tiers,
            folds=folds,
            seed=seed,
            flag_at=settings.flag_at,
            review_at=settings.review_at,
            emergency_at=settings.emergency_at,
        ):
            click.echo(
                f"  {f.lang}: escalation recall {f.recall:.3f} of {f.escalations}, emergency recall "
                f"{f.emergency_recall:.3f} of {f.emergencies}, specificity {f.specificity:.3f} of {f.benign} "
                f"(benign in the review band {f.review_share:.3f}; "
                f"escalations flagged or reviewed {f.recall_with_review:.3f})"
            )
    blob = learn.artefact_bytes(examples, data, learn.corpus_sha256(files), seed, tiers)
    settings.artefact.parent.mkdir(parents=True, exist_ok=True)
    settings.artefact.write_bytes(blob)
    digest = sha256_of(settings.artefact)
    text = path.read_text(encoding="utf-8")
    learned_at = text.index("[learned]")
    head, tail = text[:learned_at], text[learned_at:]
    tail, n = _SHA_LINE.subn(rf'\g<1>"{digest}"', tail, count=1)
    if n != 1:
        raise click.ClickException(f"{path}: no sha256 line under [learned] to update")
    path.write_text(head + tail, encoding="utf-8")
    click.echo(f"wrote {settings.artefact} ({len(blob) / 1e6:.1f} MB), sha256 {digest} pinned in {path}")


@redflags.command("eval")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--rules-only", is_flag=True, help="The rule layer alone (no learned layer, no language check).")
@click.option("--criteria", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.pass_context
def evaluate(ctx: click.Context, file: Path, rules_only: bool, criteria: Path | None) -> None:
    """Figures for a labelled JSON-lines file: per language, per tier and per criterion, then the misses.

    Each line: "text", "channel", and the truth as "gold" (with "accept", the development set's shape) or
    "level" (with "criteria", the corpus' shape); the language from "lang", else the tags spanish/spanglish; the
    reply's date from "received_on" (YYYY-MM-DD), if there is one."""
    from followup.cli.check import received_on
    from followup.parsing.mailtext import extract_reply
    from followup.redflags import ReplyContext, Screen

    path = criteria or settings_of(ctx).clinic.red_flags
    screen = Screen.from_file(path, learned=not rules_only)
    rows = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    started = time.perf_counter()
    results = []
    for row in rows:
        text = extract_reply(row["text"]) if row.get("channel") == "email" else row["text"]
        results.append((row, screen.assess(text, ReplyContext(today=received_on(row)))))
    elapsed = time.perf_counter() - started
    groups: dict[str, list[tuple[dict[str, Any], Any]]] = defaultdict(list)
    for row, verdict in results:
        gold = _gold(row)
        groups[f"language {_lang(row)}"].append((row, verdict))
        tier = min((screen.criteria[c].tier for c in row.get("criteria") or [] if c in screen.criteria), default=None)
        groups[f"tier {tier or ('none' if gold == 'none' else '?')}"].append((row, verdict))
        for c in row.get("criteria") or []:
            groups[f"criterion {c}"].append((row, verdict))
    for name in sorted(groups):
        click.echo(f"{name:<32} {_figures(groups[name])}")
    click.echo(f"{'all':<32} {_figures(results)}")
    layers = Counter(str(v.layer) for _, v in results)
    click.echo(
        "layers: " + ", ".join(f"{k} {n}" for k, n in sorted(layers.items())) + f"; {len(rows) / elapsed:.0f} replies/s"
    )
    for row, verdict in results:
        if verdict.level not in _accept(row):
            label = row.get("id") or row.get("source") or ""
            click.echo(
                f"MISS {label} gold={_gold(row)} got={verdict.level} layer={verdict.layer} "
                f"p={verdict.learned.probability if verdict.learned else '-'}: {row['text'][:90]!r}"
            )
    sys.exit(0)


def _gold(row: dict[str, Any]) -> str:
    return str(row.get("gold") or row.get("level"))


def _accept(row: dict[str, Any]) -> list[str]:
    return list(row.get("accept") or [_gold(row)])


def _lang(row: dict[str, Any]) -> str:
    if "lang" in row:
        return str(row["lang"])
    return "es" if {"spanish", "spanglish"} & set(row.get("tags") or []) else "en"


def _figures(pairs: list[tuple[dict[str, Any], Any]]) -> str:
    esc = [(r, v) for r, v in pairs if _gold(r) in ("emergency", "red_flag")]
    em = [(r, v) for r, v in pairs if _gold(r) == "emergency"]
    ok = [(r, v) for r, v in pairs if _gold(r) == "none"]
    parts = []
    if esc:
        parts.append(f"recall {sum(v.level != 'none' for _, v in esc) / len(esc):.3f} of {len(esc)}")
    if em:
        parts.append(f"emergency {sum(v.level in _accept(r) for r, v in em) / len(em):.3f} of {len(em)}")
    if ok:
        parts.append(f"specificity {sum(v.level in _accept(r) for r, v in ok) / len(ok):.3f} of {len(ok)}")
    if esc:  # escalated, but at the wrong level (an emergency answered as a red flag, or the other way)
        wrong = sum(v.level != "none" and v.level not in _accept(r) for r, v in esc)
        parts.append(f"wrong level {wrong / len(esc):.3f}")
    return ", ".join(parts)
