"""Red-flag detection: start-up time (a fresh process importing and loading both layers, then reading one reply)
and throughput on patient-style replies (the simulator's labelled phrasings plus longer mixed ones), for the
combined detector and for the learned layer alone, with its load time and the process's peak memory.

    .venv/bin/python bench/redflags.py [--count 3000]

Prints one JSON line, last: startup_s (median of 3 cold starts, both layers), rules_startup_s, replies_per_s
(both layers), learned_replies_per_s (the learned layer alone: embeddings, classifier, neighbours), learned_load_s
(artefact read and checked, encoder loaded), p50/p99 per reply, peak_rss_mb; and, less sensitive to a shared
machine's load than the wall-clock rates, CPU time per reply (`time.process_time`: cpu_ms_per_reply for both layers,
rules_cpu_ms_per_reply, learned_cpu_ms_per_reply) with the load average at the start and the end; cpus (the cores
this process may run on: `taskset -c 0 .venv/bin/python bench/redflags.py` measures one core) and blas_threads.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from _common import ROOT, emit
from threadpoolctl import threadpool_info

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


def learned_layer(model: LearnedModel, texts: list[str], count: int) -> tuple[float, float]:
    """Replies/s of the learned layer alone (embeddings, classifier, neighbours), the detector's own model, and its
    CPU-ms per reply."""
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        model.predict(texts[i % len(texts)])
    return count / (time.perf_counter() - started), 1000 * (time.process_time() - cpu) / count


def cpu_ms(assess: Callable[[str], object], texts: list[str], count: int) -> float:
    """CPU-ms per reply of `assess` over `count` replies."""
    cpu = time.process_time()
    for i in range(count):
        assess(texts[i % len(texts)])
    return 1000 * (time.process_time() - cpu) / count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=3000)
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    startups = [cold_start() for _ in range(3)]
    rules_startups = [cold_start(learned=False) for _ in range(3)]
    detector = load_detector(ROOT / "clinic/red_flags.toml")
    texts = [*BENIGN_REPLIES, *RED_FLAG_REPLIES, *LONGER]
    for t in texts:
        detector.assess(t)  # warm
    per: list[float] = []
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(args.count):
        t0 = time.perf_counter()
        detector.assess(texts[i % len(texts)])
        per.append(time.perf_counter() - t0)
    elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu
    q = statistics.quantiles(per, n=100)
    assert detector.model is not None, "the criteria file has no enabled [learned] layer"
    learned_rate, learned_cpu = learned_layer(detector.model, texts, args.count)
    rules_cpu = cpu_ms(detector.rules.assess, texts, args.count)
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
            "cpu_ms_per_reply": round(1000 * cpu_elapsed / args.count, 2),
            "rules_cpu_ms_per_reply": round(rules_cpu, 2),
            "learned_cpu_ms_per_reply": round(learned_cpu, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "cpus": len(os.sched_getaffinity(0)),
            "blas_threads": max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=None),
        }
    )


if __name__ == "__main__":
    main()
