"""Cut a reply into clauses: the learned layer reads each one, so a red flag buried in a long message counts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from followup.redflags.normalise import enumeration_starts

# A sentence end, a line break, a semicolon, or a contrastive word ("but", "pero", "aunque", "though"): after
# one of these, negation and hedging stop applying, and a new complaint can start.
_CUT = re.compile(
    r"(?<=[.!?;…])\s+|\n+|\s*;\s*|,?\s+(?=(?:but|though|although|however|pero|aunque|sin embargo)\b)",
    re.IGNORECASE,
)
MAX_CLAUSES = 24


@dataclass(frozen=True)
class Clause:
    """A piece of the reply with its offsets in the reply."""

    text: str
    start: int
    end: int


def clauses(text: str) -> list[Clause]:
    """The non-empty clauses of `text` in order (at most MAX_CLAUSES; the rest is folded into the last)."""
    out: list[Clause] = []
    cuts = [(m.start(), m.end()) for m in _CUT.finditer(text)]
    cuts += [(at, at) for at in enumeration_starts(text)]  # "1 worse 2 no 3 ...": one clause per numbered answer
    pos = 0
    for start, end in sorted(cuts):
        if start < pos:
            continue
        _add(out, text, pos, start)
        pos = end
    _add(out, text, pos, len(text))
    if len(out) > MAX_CLAUSES:
        last = out[MAX_CLAUSES - 1]
        out = [*out[: MAX_CLAUSES - 1], Clause(text[last.start : out[-1].end], last.start, out[-1].end)]
    return out


def _add(out: list[Clause], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if not any(ch.isalnum() for ch in stripped):
        return
    lead = len(piece) - len(piece.lstrip())
    out.append(Clause(stripped, start + lead, start + lead + len(stripped)))
