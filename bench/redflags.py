"""Red-flag detection: start-up time (a fresh process importing and loading both layers, then reading one reply)
and throughput on patient-style replies (the simulator's labelled phrasings plus longer mixed ones), for the
combined detector and for the learned layer alone, with its load time and the process's peak memory.

    .venv/bin/python bench/redflags.py [--count 3000]

Prints one JSON line, last: startup_s (median of 3 cold starts, both layers), rules_startup_s, replies_per_s
(both layers), learned_replies_per_s (the learned layer alone: embeddings, classifier, neighbours), learned_load_s
(artefact read and checked, encoder loaded), p50/p99 per reply, peak_rss_mb.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

from _common import ROOT, emit

from followup.redflags.learned import LearnedModel
from followup.runtime import load_detector
from followup.simulator.cohort import BENIGN_REPLIES, RED_FLAG_REPLIES

LONGER = (
    "Hi, thanks for checking in. The twitching in my left calf is about the same, maybe a little less since I cut "
    "back to two coffees a day. No weakness, no trouble swallowing or breathing. Sleeping better too.",
    "Not sure if this matters but my wife says my speech sounds slurred in the evenings, and I've been dropping "
    "my keys a lot this week. The eyelid twitch is gone though.",
    "I read that weakness can be a sign of something serious, I'm worried, but honestly I don't have any. "
    "Just the usual twitches after the gym.",
)
COLD_START = (
    "import time; t = time.perf_counter();"
    "from followup.redflags import Screen;"
    "d = Screen.from_file('clinic/red_flags.toml', learned={learned}); d.assess('my arm feels weaker');"
    "print(time.perf_counter() - t)"
)


def cold_start(learned: bool = True) -> float:
    out = subprocess.run(  # noqa: S603 - our own code, fixed arguments
        [sys.executable, "-c", COLD_START.format(learned=learned)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


LEARNED_LOAD = (
    "import time, tomllib; from pathlib import Path;"
    "from followup.redflags.learned import LearnedModel;"
    "from followup.redflags.learned.config import parse_learned;"
    "from followup.redflags.load import load_rulebook;"
    "path = Path('clinic/red_flags.toml');"
    "settings = parse_learned(tomllib.loads(path.read_text(encoding='utf-8'))['learned'], path);"
    "tiers = {{cid: c.tier for cid, c in load_rulebook(path).criteria.items()}};"
    "t = time.perf_counter(); m = LearnedModel.load(settings, tiers); m.predict('my arm feels weaker');"
    "print(time.perf_counter() - t)"
)


def learned_load() -> float:
    """Load time of the learned layer (artefact checked and read, encoder loaded, one reply), in a fresh process:
    loading a second encoder here would double the benchmark's resident memory, which the service never does."""
    out = subprocess.run(  # noqa: S603 - our own code, fixed arguments
        [sys.executable, "-c", LEARNED_LOAD.format()], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def learned_layer(model: LearnedModel, texts: list[str], count: int) -> float:
    """Replies/s of the learned layer alone (embeddings, classifier, neighbours), the detector's own model."""
    started = time.perf_counter()
    for i in range(count):
        model.predict(texts[i % len(texts)])
    return count / (time.perf_counter() - started)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=3000)
    args = p.parse_args()
    startups = [cold_start() for _ in range(3)]
    rules_startups = [cold_start(learned=False) for _ in range(3)]
    detector = load_detector(ROOT / "clinic/red_flags.toml")
    texts = [*BENIGN_REPLIES, *RED_FLAG_REPLIES, *LONGER]
    for t in texts:
        detector.assess(t)  # warm
    per: list[float] = []
    started = time.perf_counter()
    for i in range(args.count):
        t0 = time.perf_counter()
        detector.assess(texts[i % len(texts)])
        per.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(per, n=100)
    assert detector.model is not None, "the criteria file has no enabled [learned] layer"
    learned_rate = learned_layer(detector.model, texts, args.count)
    learned_load_s = learned_load()
    emit(
        {
            "bench": "redflags",
            "count": args.count,
            "distinct_texts": len(texts),
            "startup_s": round(statistics.median(startups), 2),
            "startup_runs_s": [round(s, 2) for s in startups],
            "replies_per_s": round(args.count / elapsed, 1),
            "p50_ms": round(1000 * q[49], 2),
            "p99_ms": round(1000 * q[98], 2),
            "rules_startup_s": round(statistics.median(rules_startups), 2),
            "learned_load_s": round(learned_load_s, 2),
            "learned_replies_per_s": round(learned_rate, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    )


if __name__ == "__main__":
    main()
