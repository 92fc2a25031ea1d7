"""`followup check`: red-flag verdicts for replies typed in or streamed as JSON lines.

    followup check "my right hand feels weaker"
    followup check --jsonl < replies.jsonl     # {"text": ..., "channel": "sms"|"email"} per line

Each input line gives exactly one output line, in order. Optional keys: "weeks_since_onset" (number),
"last_question" (a question id from the criteria file) and "received_on" (the reply's date, YYYY-MM-DD: "since
Christmas" is counted back from it; without it a named date counts as long enough). A line that cannot be read yields
{"error": ..., "level": null}: never a silent "none". Error messages never quote the patient's text.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import date
from typing import Any, Protocol, TextIO

from followup.core.vocab import CHANNELS
from followup.parsing.mailtext import extract_reply
from followup.redflags.verdict import Question, ReplyContext, Verdict

_LEVEL_WORDS = {"emergency": "EMERGENCY", "red_flag": "RED FLAG", "none": "no red flag"}


class _Detector(Protocol):
    def assess(self, text: str, context: ReplyContext | None = None) -> Verdict: ...

    def question(self, qid: str) -> Question: ...


class BadLine(ValueError):
    """An input line is not a usable request; the message is safe to show (no patient text)."""


def run_check(lines_in: Iterable[str], out: TextIO, detector: _Detector) -> int:
    """Write one verdict (or error) per non-blank input line; return 0, or 1 if any line was bad."""
    failed = False
    for line in lines_in:
        if not line.strip():
            continue
        try:
            text, context = parse_line(line, detector)
            record: dict[str, Any] = detector.assess(text, context).to_dict()
        except BadLine as exc:
            failed = True
            record = {"error": str(exc), "level": None}
        except Exception as exc:  # a bug must not silently drop or shift a patient's line
            failed = True
            record = {"error": f"internal error ({type(exc).__name__})", "level": None}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
    return 1 if failed else 0


def parse_line(line: str, detector: _Detector) -> tuple[str, ReplyContext]:
    """The text to assess (email replies stripped of quoted history) and its context."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadLine(f"not JSON (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise BadLine("expected a JSON object")
    text = obj.get("text")
    if not isinstance(text, str):
        raise BadLine('"text" must be a string')
    channel = obj.get("channel", "sms")
    if channel not in CHANNELS:
        raise BadLine('"channel" must be "sms" or "email"')
    weeks = obj.get("weeks_since_onset")
    if weeks is not None and (isinstance(weeks, bool) or not isinstance(weeks, int | float)):
        raise BadLine('"weeks_since_onset" must be a number')
    question = None
    qid = obj.get("last_question")
    if qid is not None:
        if not isinstance(qid, str):
            raise BadLine('"last_question" must be a question id')
        try:
            question = detector.question(qid)
        except KeyError:
            raise BadLine(f'unknown question id "{qid}"') from None
    body = extract_reply(text) if channel == "email" else text
    context = ReplyContext(
        weeks_since_onset=None if weeks is None else float(weeks),
        last_question=question,
        today=received_on(obj),
    )
    return body, context


def received_on(obj: dict[str, Any]) -> date | None:
    """The optional "received_on" of a line, as a date (BadLine when it is not one)."""
    value = obj.get("received_on")
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise BadLine('"received_on" must be a date (YYYY-MM-DD)')


def format_verdict(verdict: Verdict) -> str:
    """A short human-readable verdict: the level, the criteria, then one line per reason."""
    head = _LEVEL_WORDS[verdict.level]
    if verdict.review:
        head = f"NEEDS REVIEW ({verdict.tier})"
    elif verdict.tier:
        head += f" ({verdict.tier}): {', '.join(verdict.criteria)}"
    if verdict.layer:
        head += f" [{verdict.layer}]"
    if verdict.language:
        head += f" language {verdict.language}"
    return head + "\n" + "\n".join(f"  - {line}" for line in verdict.explanation().splitlines())


def main(argv: list[str] | None = None) -> int:
    """`python -m followup.cli.check [--jsonl | TEXT] [--criteria PATH]` (until the CLI wires it in)."""
    from pathlib import Path

    from followup.redflags import Screen

    args = list(sys.argv[1:] if argv is None else argv)
    path = Path("clinic/red_flags.toml")
    if "--criteria" in args:
        i = args.index("--criteria")
        path = Path(args[i + 1])
        del args[i : i + 2]
    detector = Screen.from_file(path)
    if args == ["--jsonl"]:
        return run_check(sys.stdin, sys.stdout, detector)
    print(format_verdict(detector.assess(" ".join(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
