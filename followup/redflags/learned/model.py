"""The learned layer at run time: load the pinned artefact, read a reply clause by clause, explain by neighbours."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from followup.core.vocab import Tier
from followup.redflags.learned.artefact import ArtefactError, read_pinned
from followup.redflags.learned.clauses import Clause, clauses
from followup.redflags.learned.config import LearnedSettings
from followup.redflags.learned.features import DIM, Encoder, UseEncoder, pieces, pooled
from followup.redflags.verdict import Neighbour

NONE = "none"


_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Prediction:
    """What the learned layer read in a reply (the clauses the rules discounted left out)."""

    p_any: float  # 1 - p(none)
    p_emergency: float  # summed over the emergency-tier criteria
    criterion: str | None  # the most likely criterion
    p_criterion: float
    clause: Clause | None  # the clause that scores highest on its own: what drove the verdict
    neighbours: tuple[Neighbour, ...] = ()
    gated: tuple[Clause, ...] = ()  # clauses not read because the rules discounted what they say
    ranked: tuple[tuple[str, float], ...] = ()  # every criterion, most likely first

    @classmethod
    def nothing(cls, gated: tuple[Clause, ...] = ()) -> Prediction:
        return cls(0.0, 0.0, None, 0.0, None, (), gated)


def softmax(z: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: npt.NDArray[np.float32] = e / e.sum(axis=-1, keepdims=True)
    return out


class LearnedModel:
    """Multinomial logistic regression over USE embeddings, with int8 nearest neighbours as explanations."""

    def __init__(
        self,
        header: Mapping[str, Any],
        arrays: Mapping[str, npt.NDArray[Any]],
        tiers: Mapping[str, Tier],
        settings: LearnedSettings,
        encoder: Encoder | None = None,
    ) -> None:
        self.classes: tuple[str, ...] = tuple(header["classes"])
        unknown = [c for c in self.classes if c != NONE and c not in tiers]
        if unknown:
            raise ArtefactError(
                f"the model knows criteria the criteria file does not ({', '.join(unknown)}): retrain it"
            )
        self.header = dict(header)
        self.settings = settings
        self._coef = np.asarray(arrays["coef"], dtype=np.float32)
        self._bias = np.asarray(arrays["intercept"], dtype=np.float32)
        codes = np.asarray(arrays["neighbour_codes"], dtype=np.float32)
        bank = codes * np.asarray(arrays["neighbour_scales"], dtype=np.float32)[:, None]
        self._bank = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-9)
        self._bank_labels: list[str] = list(header["neighbour_labels"])
        self._bank_texts: list[str] = list(header["neighbour_texts"])
        self._emergency = np.array([tiers.get(c) == Tier.EMERGENCY for c in self.classes])
        self._none = self.classes.index(NONE)
        self.encoder: Encoder = encoder or UseEncoder()

    @classmethod
    def load(cls, settings: LearnedSettings, tiers: Mapping[str, Tier], encoder: Encoder | None = None) -> LearnedModel:
        """The pinned artefact (ArtefactError when its sha256 is not the one in the criteria file)."""
        header, arrays = read_pinned(settings.artefact, settings.sha256)
        return cls(header, arrays, tiers, settings, encoder)

    def predict(self, text: str, gated: Sequence[tuple[int, int]] = ()) -> Prediction:
        """Probabilities for `text`, leaving out every clause that overlaps a span in `gated`."""
        parts = clauses(text)
        dropped = tuple(c for c in parts if any(c.start < e and s < c.end for s, e in gated))
        kept = [c for c in parts if c not in dropped]
        if not kept or (dropped and sum(len(_WORD.findall(c.text)) for c in kept) < self.settings.min_words):
            return Prediction.nothing(dropped)  # what the rules left unread is too short to read ("BAJA.")
        texts = pieces(text, kept)
        emb = self.encoder.encode(texts)
        probs = softmax(self._coef @ pooled(emb) + self._bias)
        # Each clause on its own (its embedding as both halves of the feature): which one drove the verdict.
        own = softmax(np.concatenate([emb[: len(kept)], emb[: len(kept)]], axis=1) @ self._coef.T + self._bias)
        driver, whole = kept[int(np.argmax(1.0 - own[:, self._none]))], emb[-1]
        if self.settings.clause_alone:
            urgent = own[:, self._emergency].sum(axis=1)
            long_enough = [i for i, c in enumerate(kept) if len(c.text.split()) >= self.settings.min_words]
            if long_enough:
                best = max(long_enough, key=lambda i: float(urgent[i]))
                if urgent[best] >= self.settings.clause_emergency_at and urgent[best] > probs[self._emergency].sum():
                    probs, driver, whole = own[best], kept[best], emb[best]
        ranked = [i for i in np.argsort(-probs) if i != self._none]
        top = int(ranked[0])
        return Prediction(
            p_any=round(float(1.0 - probs[self._none]), 4),
            p_emergency=round(float(probs[self._emergency].sum()), 4),
            criterion=self.classes[top],
            p_criterion=round(float(probs[top]), 4),
            clause=driver,
            neighbours=self._nearest(whole),
            gated=dropped,
            ranked=tuple((self.classes[int(i)], round(float(probs[i]), 4)) for i in ranked),
        )

    def _nearest(self, vector: npt.NDArray[np.float32]) -> tuple[Neighbour, ...]:
        k = max(
            self.settings.neighbours,
            self.settings.review_neighbours if self.settings.review_needs_flagged_neighbour else 0,
        )
        if k == 0 or not len(self._bank):
            return ()
        sims = self._bank @ (vector / max(float(np.linalg.norm(vector)), 1e-9))
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]  # the k best without sorting all of them
        best = top[np.argsort(-sims[top], kind="stable")]
        return tuple(Neighbour(self._bank_texts[i], self._bank_labels[i], round(float(sims[i]), 3)) for i in best)


__all__ = ["DIM", "LearnedModel", "Neighbour", "Prediction"]
