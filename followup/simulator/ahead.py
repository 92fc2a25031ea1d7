"""The learned layer's reading worked out ahead, in a second process, while the loop does the rest.

What the learned layer makes of a reply (its prediction: embeddings, classifier, nearest examples) and the reply's
language depend on its text alone. Before the loop runs the dispatcher and the jobs of a step, it knows which replies
arrive in the next half hour: it hands their texts to a worker process, which reads them with its own copy of the
model while the loop goes on. When the detector later reads those replies, it takes the worker's prediction and
language instead of working them out itself. The rules, the context and every decision run where they always run.

- The worker reads a reply exactly as the detector does (`LearnedModel.predict` on the same text, one BLAS thread):
  the same numbers, so a run's outcome does not depend on whether a reply was read ahead (the simulator's summary
  is the same with it on or off).
- Only a reply read whole is taken from the worker: one whose figure of speech or negated symptom the rules kept
  from the model (`gated`, blanked exclusions) is read inline, as the text the model sees is not the reply's.
- Each result is used once. A text that recurs is read again for each reply that carries it: this is a second core
  doing the work, not a cache that would skip it.
- Replies are read ahead up to `HORIZON` before they arrive (the loop's steps are a tick or longer). What the
  detector did not ask for by the time its reply arrived (a reply too short for the learned layer, a duplicate the
  service dropped) is dropped and counted, so the saving is measured, not assumed.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from followup.redflags.learned.language import LanguageRead
from followup.redflags.learned.model import Prediction
from followup.redflags.screen import Screen, load_learned

HORIZON = timedelta(minutes=30)
_WORKER: Any = None

Reading = tuple[Prediction, LanguageRead]


def _start_worker(criteria: str) -> None:
    global _WORKER
    _WORKER = load_learned(criteria)


def _read(text: str) -> Reading:
    _, model, languages = _WORKER
    return model.predict(text), languages.read(text)


@dataclass
class _Pending:
    at: datetime
    future: Future[Reading]
    predicted: bool = False  # the prediction was taken; the language read ends the entry


class ReadAhead:
    """Stands in for a `Screen`'s model and language reader: answers from what a worker process read ahead."""

    def __init__(self, screen: Screen, criteria: Path) -> None:
        if screen.model is None or screen.languages is None:
            raise ValueError("read-ahead needs the learned layer")
        self.screen = screen
        self.model, self.languages = screen.model, screen.languages
        self.criteria = criteria
        self.stats: Counter[str] = Counter()
        self._pending: dict[str, deque[_Pending]] = {}

    def __enter__(self) -> ReadAhead:
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(str(self.criteria),),
        )
        self.screen.model = _AheadModel(self)  # type: ignore[assignment]
        self.screen.languages = _AheadLanguages(self)  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        self.screen.model, self.screen.languages = self.model, self.languages  # the detector is the process's
        self._pool.shutdown(wait=True, cancel_futures=True)

    def ahead(self, replies: Iterable[tuple[datetime, str]], now: datetime) -> None:
        """Drop what replies delivered by `now` did not use, then start reading these replies."""
        for text in list(self._pending):
            queue = self._pending[text]
            while queue and queue[0].at <= now:
                queue.popleft().future.cancel()
                self.stats["unused"] += 1
            if not queue:
                del self._pending[text]
        for at, text in replies:
            self._pending.setdefault(text, deque()).append(_Pending(at, self._pool.submit(_read, text)))

    def predict(self, text: str, gated: Sequence[tuple[int, int]]) -> Prediction:
        queue = self._pending.get(text)
        if gated or not queue or queue[0].predicted:
            self.stats["inline"] += 1
            return self.model.predict(text, gated)
        queue[0].predicted = True
        self.stats["ahead"] += 1
        return queue[0].future.result()[0]

    def read(self, text: str) -> LanguageRead:
        queue = self._pending.get(text)
        if not queue:
            return self.languages.read(text)
        entry = queue.popleft()
        if not queue:
            del self._pending[text]
        return entry.future.result()[1]


class _AheadModel:
    def __init__(self, ahead: ReadAhead) -> None:
        self._ahead = ahead

    def predict(self, text: str, gated: Sequence[tuple[int, int]] = ()) -> Prediction:
        return self._ahead.predict(text, gated)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ahead.model, name)


class _AheadLanguages:
    def __init__(self, ahead: ReadAhead) -> None:
        self._ahead = ahead

    def read(self, text: str) -> LanguageRead:
        return self._ahead.read(text)


__all__ = ["HORIZON", "ReadAhead"]
