"""The learned layer's sentence embeddings worked out ahead, in a second process, while the loop does the rest.

A reply's embeddings depend on its text alone. Before the loop runs the dispatcher and the jobs of a step, it knows
which replies arrive in the next half hour: it hands their texts to a worker process, which embeds them while the loop
goes on. When the detector later asks for those pieces, it gets the worker's result instead of embedding them
itself. Nothing else changes: the rules, the context, the model and every decision run where they always run.

- Each reply's pieces are embedded in one call, as the detector embeds them (`pieces(text, clauses(text))`):
  the same shapes on the same single BLAS thread give the same numbers, so a run's outcome does not depend on
  whether an embedding was made ahead (the simulator's summary is the same with it on or off).
- Each result is used once. A text that recurs is embedded again for each reply that carries it: this is a second
  core doing the work, not a cache that would skip it.
- Replies are read ahead up to `HORIZON` before they arrive (the loop's steps are a tick or longer). What the
  detector did not ask for by the time its reply arrived (a reply the rules answered alone, one whose figure of
  speech the rules blanked out before the model reads it, a duplicate) is dropped and counted, so the saving is
  measured, not assumed.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter, deque
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from followup.redflags.learned.clauses import clauses
from followup.redflags.learned.features import Encoder, Matrix, pieces

HORIZON = timedelta(minutes=30)
_WORKER: Any = None


def _start_worker() -> None:
    global _WORKER
    from followup.redflags.learned.features import UseEncoder

    _WORKER = UseEncoder()


def _embed(texts: list[str]) -> Matrix:
    return np.asarray(_WORKER.encode(texts), dtype=np.float32)


class AheadEncoder:
    """An `Encoder` that answers from embeddings a worker process made ahead, else embeds inline."""

    def __init__(self, inline: Encoder) -> None:
        self.inline = inline
        self.stats: Counter[str] = Counter()
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker
        )
        self._pending: dict[tuple[str, ...], deque[tuple[datetime, Future[Matrix]]]] = {}

    def ahead(self, replies: Iterable[tuple[datetime, str]], now: datetime) -> None:
        """Drop what replies delivered by `now` did not use, then start embedding these replies' pieces."""
        for key in list(self._pending):
            queue = self._pending[key]
            while queue and queue[0][0] <= now:
                queue.popleft()[1].cancel()
                self.stats["unused"] += 1
            if not queue:
                del self._pending[key]
        for at, text in replies:
            key = tuple(pieces(text, clauses(text)))
            self._pending.setdefault(key, deque()).append((at, self._pool.submit(_embed, list(key))))

    def encode(self, texts: list[str]) -> Matrix:
        queue = self._pending.get(tuple(texts))
        if not queue:
            self.stats["inline"] += 1
            return self.inline.encode(texts)
        _, future = queue.popleft()
        if not queue:
            del self._pending[tuple(texts)]
        self.stats["ahead"] += 1
        return future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["AheadEncoder"]
