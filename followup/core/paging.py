"""Keyset pagination: a list that can grow is read newest first by id, each page `id < before` with a limit, so a
deep page costs what the first one does (an OFFSET reads and drops every row before it). Pure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
COUNT_CAP = 10_000  # a list's total is counted up to here ("10,000+"): an exact count reads every matching row


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    next_before: int | None  # the `before` of the next (older) page; None on the last one


def cut(fetched: Sequence[T], limit: int, key: Callable[[T], int | None]) -> Page[T]:
    """A page from rows fetched with `limit + 1`: the first `limit`, and a cursor only if there was one more."""
    rows = list(fetched[:limit])
    last = key(rows[-1]) if rows and len(fetched) > limit else None
    return Page(rows, last)


def total_text(total: int, cap: int = COUNT_CAP) -> str:
    """A capped total as people read it: "10,000+" once the count stopped at `cap`."""
    return f"{cap:,}+" if total > cap else f"{total:,}"
