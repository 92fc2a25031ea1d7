"""Split a reply into plain and marked spans for the escalation page: findings (what escalated) and suppressed
mentions (seen but not counted). Pure; the template escapes every span, so a reply is only ever text."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Span:
    text: str
    kind: str | None = None  # None | "finding" | "suppressed"
    note: str = ""


REASONS = {
    "negated": "the reply says it is absent",
    "other_person": "it is about someone else",
    "hypothetical": "a worry or something read",
    "historical": "in the past",
    "question": "asked about, not reported",
    "resolved": "gone or improving",
    "trigger": "short-lived, tied to a trigger",
    "explained": "an obvious passing cause (dentist, flu, hard exercise)",
}


def _locate(text: str, item: Mapping[str, Any]) -> tuple[int, int] | None:
    """The item's offsets if they point at its text; else the first place its text occurs; else None."""
    quoted = str(item.get("text") or "")
    start, end = item.get("start"), item.get("end")
    fits = isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)
    if fits and (not quoted or text[start:end].lower() == quoted.lower()):
        return start, end  # type: ignore[return-value]
    if quoted:
        at = text.lower().find(quoted.lower())
        if at >= 0:
            return at, at + len(quoted)
    return None


def highlight(
    text: str,
    findings: Iterable[Mapping[str, Any]],
    suppressed: Iterable[Mapping[str, Any]] = (),
    labels: Mapping[str, str] | None = None,
) -> list[Span]:
    """Spans covering `text` exactly once; a finding wins over a suppressed mention of the same words."""
    labels = labels or {}
    marks: list[tuple[int, int, str, str]] = []

    def add(item: Mapping[str, Any], kind: str, note: str) -> None:
        where = _locate(text, item)
        if where is None:
            return
        start, end = where
        if any(start < e and s < end for s, e, _, _ in marks):
            return
        marks.append((start, end, kind, note))

    for f in findings:
        crit = str(f.get("criterion", ""))
        add(f, "finding", f"{labels.get(crit, crit)} ({f.get('tier', '')})")
    for q in suppressed:
        crit = str(q.get("criterion", ""))
        reason = REASONS.get(str(q.get("reason", "")), str(q.get("reason", "")))
        add(q, "suppressed", f"not counted as {labels.get(crit, crit)}: {reason}")
    marks.sort()
    out: list[Span] = []
    pos = 0
    for start, end, kind, note in marks:
        if start > pos:
            out.append(Span(text[pos:start]))
        out.append(Span(text[start:end], kind, note))
        pos = end
    if pos < len(text) or not out:
        out.append(Span(text[pos:]))
    return out
