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
    read_ahead: bool = True,
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
        read_ahead=read_ahead,
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


# What each invariant counts, printed beside it (the simulator's report module defines them).
INVARIANT_MEANING = {
    "quiet_hour_violations": "program messages sent outside the patient's local sending window",
    "duplicate_sends": "messages the provider accepted twice, or a program step sent twice to one patient",
    "missed_escalations": "red-flag replies that no escalation holds",
    "lost_messages": "messages due by the end that were neither sent nor closed with a reason",
}
STATE_MEANING = {
    "delivered": "the provider confirmed delivery",
    "sent": "accepted by the provider, no delivery receipt yet",
    "scheduled": "due after the simulated end",
    "cancelled": "not needed any more: opted out, unenrolled, or replaced",
    "expired": "too late to be useful (past its time to live)",
    "undelivered": "the provider could not deliver it",
    "failed": "refused by the provider",
}


def _counts(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in values.items()) or "none"


def format_summary(s: dict[str, Any]) -> str:
    """The summary as text: every counter with a word on what it counts (issue 12: "benign replies escalated: 50"
    alone read as a bug)."""
    labels = s.get("criteria_labels", {})
    lines = [
        f"{s['patients']} patients over {s['days']} days (seed {s['seed']}, {s['start']} to {s['end']}), "
        f"{s['wall_seconds']} s wall, peak {s['peak_rss_mb']} MB",
        f"messages sent: {s['messages_sent']} (accepted by the simulated provider: to patients, and alerts, digests "
        "and notices to the clinic)",
    ]
    for channel, kinds in s["messages_by_channel_and_kind"].items():
        lines.append(f"  {channel:<6} " + _counts(kinds))
    lines.append("message states at the end (every message scheduled, including those due later):")
    for state, n in sorted(s["message_status"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {state:<12} {n:>6}  {STATE_MEANING.get(state, '')}".rstrip())
    for reason, n in s.get("closed_reasons", {}).items():
        lines.append(f"    {n:>6} {reason}")
    lines.append(
        f"replies the synthetic patients sent: {_counts(s['replies'])} "
        "(benign: lifestyle and how-are-you answers; red_flag: written to match a criterion; stop: STOP)"
    )
    lines.append(
        f"escalations opened: {s['escalations']}; by tier: {_counts(s['escalations_by_tier'])}; "
        f"from: {_counts(s.get('escalations_by_source', {}))}"
    )
    benign = s["benign_replies_escalated"]
    lines.append(
        f"benign replies escalated: {benign} (replies written as benign that the detector escalated"
        + (
            ": not an error when the reason is persisting twitching, since twitching four or more weeks after the "
            "onset recorded at triage is a routine referral in clinic/red_flags.toml; judge the rest)"
            if benign
            else ")"
        )
    )
    for criterion, n in s.get("benign_replies_escalated_by_criterion", {}).items():
        lines.append(f"  {n:>6} {labels.get(criterion, criterion)} ({criterion})")
    lines.append("invariants (must all be 0):")
    for k in INVARIANTS:
        flag = "   <-- VIOLATED" if s[k] else ""
        lines.append(f"  {k:<22} {s[k]:>4}  {INVARIANT_MEANING.get(k, '')}{flag}")
    lines.extend(f"  e.g. {e}" for e in s["examples"])
    return "\n".join(lines)
