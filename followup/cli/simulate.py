"""`followup simulate`: a progress bar on stderr, then the summary (as text, or one JSON line with --json)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import click

from followup.settings import Settings
from followup.simulator.config import DEFAULT_START, SimConfig
from followup.simulator.report import INVARIANTS
from followup.simulator.run import SimulationError, simulate


def run_simulate_command(
    settings: Settings,
    *,
    patients: int,
    days: int,
    seed: int,
    start: datetime | None,
    tick_minutes: float,
    rates: dict[str, float],
    database_url: str | None,
    as_json: bool,
    progress: bool,
) -> int:
    """Returns the exit status: 0 when every invariant is zero, 1 otherwise."""
    import logging

    quiet = {name: logging.getLogger(name).level for name in ("followup", "alembic")}
    for name in quiet:  # a line per dispatcher pass would drown the progress bar
        logging.getLogger(name).setLevel(logging.WARNING)
    from datetime import timedelta

    cfg = SimConfig(
        patients=patients,
        days=days,
        seed=seed,
        start=start.replace(tzinfo=UTC) if start else DEFAULT_START,
        tick=timedelta(minutes=tick_minutes),
        database_url=database_url,
    )
    cfg.rates = replace(cfg.rates, **rates)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=days * 24,
            unit="h",
            desc=f"simulating {patients} patients",
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} virtual h [{elapsed}<{remaining}]",
        )
    done = 0.0

    def step(hours: float) -> None:
        nonlocal done
        if bar is not None and hours > done:
            bar.update(hours - done)
            done = hours

    try:
        summary = simulate(settings, cfg, step if bar else None)
    except SimulationError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
    if as_json:
        click.echo(json.dumps(summary, sort_keys=False, default=str))
    else:
        click.echo(format_summary(summary))
    bad = [k for k in INVARIANTS if summary[k]]
    if bad:
        click.echo(f"invariants violated: {', '.join(bad)}", err=True)
    return 1 if bad else 0


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"{s['patients']} patients over {s['days']} days (seed {s['seed']}, {s['start']} to {s['end']}), "
        f"{s['wall_seconds']} s wall, peak {s['peak_rss_mb']} MB",
        f"messages sent: {s['messages_sent']}",
    ]
    for channel, kinds in s["messages_by_channel_and_kind"].items():
        lines.append(f"  {channel:<6} " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
    lines.append("message states: " + ", ".join(f"{k} {n}" for k, n in sorted(s["message_status"].items())))
    lines.append(
        f"escalations: {s['escalations']} by tier "
        + (", ".join(f"{k} {n}" for k, n in s["escalations_by_tier"].items()) or "-")
        + f"; benign replies escalated: {s['benign_replies_escalated']}"
    )
    lines.append("replies: " + ", ".join(f"{k} {n}" for k, n in s["replies"].items()))
    lines.append("invariants (must all be 0):")
    for k in INVARIANTS:
        lines.append(f"  {k:<22} {s[k]}{'' if not s[k] else '   <-- VIOLATED'}")
    lines.extend(f"  e.g. {e}" for e in s["examples"])
    return "\n".join(lines)
