"""Training: the labelled corpus in, the artefact's bytes out; and the cross-validated figures per language.

Deterministic: the corpus is read in a fixed order, the embeddings run on one thread, the folds and the solver
are seeded, and the artefact's bytes carry no timestamp. Same corpus, same code, same machine: same sha256."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from followup.core.vocab import Tier
from followup.parsing.mailtext import extract_reply
from followup.redflags.learned.artefact import dumps
from followup.redflags.learned.features import ENCODER, Encoder, reply_features
from followup.redflags.learned.model import NONE, softmax

C = 4.0  # inverse regularisation: chosen by 5-fold CV over 0.5, 1, 2, 4, 8 (docs/redflag-model.md)
NEIGHBOUR_TEXT_CHARS = 200


@dataclass(frozen=True)
class Example:
    """One labelled reply: its text (email: the reply part), language, level and main criterion (or none)."""

    text: str
    lang: str
    level: str
    label: str
    source: str = ""
    criteria: tuple[str, ...] = field(default=())


Labeller = Callable[[str], tuple[str, ...]]


def corpus_files(corpus: Path, cases: Sequence[Path]) -> list[Path]:
    """The training inputs in their fixed order."""
    return [*sorted(corpus.glob("*.jsonl")), *cases]


def corpus_sha256(files: Iterable[Path]) -> str:
    """One hash over the training inputs (name and bytes): the artefact records it, a test compares it."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def load_examples(files: Sequence[Path], labeller: Labeller | None = None) -> list[Example]:
    """Examples from corpus JSON lines and test-case TOML files. A TOML case that escalates without naming its
    criteria is labelled by `labeller` (the rules, which pass every such case), or left out without one."""
    out: list[Example] = []
    for path in files:
        if path.suffix == ".jsonl":
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    row = json.loads(line)
                    text = extract_reply(row["text"]) if row.get("channel") == "email" else row["text"]
                    crit = tuple(row.get("criteria") or ())
                    label = crit[0] if crit and row["level"] != NONE else NONE
                    out.append(Example(text, row.get("lang", "en"), row["level"], label, f"{path.name}:{n}", crit))
        else:
            lang = "es" if path.stem.endswith("_es") else "en"
            for n, case in enumerate(tomllib.loads(path.read_text(encoding="utf-8"))["case"], 1):
                crit = tuple(case.get("criteria") or ())
                if case["level"] != NONE and not crit and labeller is not None:
                    crit = labeller(case["text"])
                if case["level"] != NONE and not crit:
                    continue
                label = crit[0] if case["level"] != NONE else NONE
                out.append(Example(case["text"], lang, case["level"], label, f"{path.name}#{n}", crit))
    return out


@dataclass(frozen=True)
class Embedded:
    """The examples' features, whole-reply embeddings and class indices."""

    features: npt.NDArray[np.float32]
    wholes: npt.NDArray[np.float32]
    y: npt.NDArray[np.int64]
    classes: tuple[str, ...]


def embed(examples: Sequence[Example], tiers: Mapping[str, Tier], encoder: Encoder) -> Embedded:
    unknown = sorted({e.label for e in examples} - set(tiers) - {NONE})
    if unknown:
        raise ValueError(f"corpus labels not in the criteria file: {', '.join(unknown)}")
    classes = (NONE, *sorted({e.label for e in examples} - {NONE}))
    feats, wholes = reply_features(encoder, [e.text for e in examples])
    y = np.array([classes.index(e.label) for e in examples], dtype=np.int64)
    return Embedded(feats, wholes, y, classes)


def fit(x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], n_classes: int, seed: int) -> tuple[Any, Any]:
    """Multinomial logistic regression (lbfgs, L2); every class index present gets a row."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=3000, random_state=seed)
    model.fit(x, y)
    coef = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, -30.0, dtype=np.float32)  # a class absent from a training fold is never predicted
    coef[model.classes_] = model.coef_.astype(np.float32)
    bias[model.classes_] = model.intercept_.astype(np.float32)
    return coef, bias


def artefact_bytes(
    examples: Sequence[Example], data: Embedded, corpus_hash: str, seed: int, tiers: Mapping[str, Tier]
) -> bytes:
    """Train on every example and pack the model and the neighbour bank."""
    coef, bias = fit(data.features, data.y, len(data.classes), seed)
    seen: dict[str, int] = {}
    for i, e in enumerate(examples):  # one neighbour per distinct text
        seen.setdefault(e.text.strip(), i)
    rows = sorted(seen.values())
    bank = data.wholes[rows]
    scales = np.maximum(np.abs(bank).max(axis=1), 1e-9) / 127.0
    codes = np.clip(np.rint(bank / scales[:, None]), -127, 127).astype(np.int8)
    header = {
        "encoder": ENCODER,
        "classes": list(data.classes),
        "tiers": {c: str(tiers[c]) for c in data.classes if c != NONE},
        "corpus_sha256": corpus_hash,
        "examples": len(examples),
        "seed": seed,
        "C": C,
        "neighbour_texts": [_short(examples[i].text) for i in rows],
        "neighbour_labels": [examples[i].label for i in rows],
    }
    arrays = {
        "coef": coef,
        "intercept": bias,
        "neighbour_codes": codes,
        "neighbour_scales": scales.astype(np.float32),
    }
    return dumps(header, arrays)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= NEIGHBOUR_TEXT_CHARS else text[: NEIGHBOUR_TEXT_CHARS - 1] + "…"


@dataclass(frozen=True)
class Figures:
    """Cross-validated figures for one language at one flag threshold."""

    lang: str
    escalations: int
    emergencies: int
    benign: int
    recall: float
    emergency_recall: float
    specificity: float
    review_share: float  # benign replies that would land in the review band
    recall_with_review: float  # escalations escalated or sent to review


def cross_validate(
    examples: Sequence[Example],
    data: Embedded,
    tiers: Mapping[str, Tier],
    *,
    folds: int = 5,
    seed: int = 0,
    flag_at: float = 0.5,
    review_at: float = 0.2,
    emergency_at: float = 0.3,
) -> list[Figures]:
    """Stratified k-fold figures per language, for the learned layer alone (no rules, no gating), with the
    combination's thresholds: flagged at p >= flag_at, or an emergency at p(emergency) >= emergency_at."""
    from sklearn.model_selection import StratifiedKFold

    p_any = np.zeros(len(examples))
    p_em = np.zeros(len(examples))
    emergency = np.array([tiers.get(c) == Tier.EMERGENCY for c in data.classes])
    strata = np.array([f"{e.lang}:{data.y[i]}" for i, e in enumerate(examples)])
    counts = {s: int((strata == s).sum()) for s in set(strata)}
    strata = np.array([s if counts[s] >= folds else s.split(":")[0] for s in strata])
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(data.features, strata):
        coef, bias = fit(data.features[train_idx], data.y[train_idx], len(data.classes), seed)
        probs = softmax(data.features[test_idx] @ coef.T + bias)
        p_any[test_idx] = 1.0 - probs[:, 0]
        p_em[test_idx] = probs[:, emergency].sum(axis=1)
    out = []
    for lang in sorted({e.lang for e in examples}):
        idx = [i for i, e in enumerate(examples) if e.lang == lang]
        esc = [i for i in idx if examples[i].level != NONE]
        em = [i for i in idx if examples[i].level == "emergency"]
        ok = [i for i in idx if examples[i].level == NONE]
        emergency_of = [bool(p_em[i] >= emergency_at and p_any[i] >= review_at) for i in range(len(examples))]
        flagged = [bool(p_any[i] >= flag_at) or emergency_of[i] for i in range(len(examples))]
        out.append(
            Figures(
                lang,
                len(esc),
                len(em),
                len(ok),
                _share(flagged[i] for i in esc),
                _share(emergency_of[i] for i in em),
                _share(not flagged[i] for i in ok),
                _share(not flagged[i] and p_any[i] >= review_at for i in ok),
                _share(p_any[i] >= review_at for i in esc),
            )
        )
    return out


def _share(flags: Iterable[bool | np.bool_]) -> float:
    values = [bool(f) for f in flags]
    return round(sum(values) / len(values), 3) if values else 0.0
