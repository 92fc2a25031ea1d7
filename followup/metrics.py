"""Prometheus metrics: what this process counts as it works, and the database's figures computed at scrape time.

Counters and histograms live in prometheus-client's registry. With several processes (web and workers), set
PROMETHEUS_MULTIPROC_DIR to an empty directory shared by them before they start: each process then writes its
values there and a scrape of any one of them sums them all (prometheus-client's multi-process mode). The
figures read from the database (backlog, open escalations, ...) are the same whoever is asked, so they are
computed per scrape from indexed counts and never stored.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

disable_created_metrics()  # no `_created` series: one less series per label set, nothing a dashboard here reads
_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

MESSAGES_SENT = Counter(
    "followup_messages_sent", "Send attempts at a provider, by channel and outcome", ["channel", "outcome"]
)
SEND_SECONDS = Histogram("followup_send_seconds", "Time a provider took to accept a send", ["channel"], buckets=_FAST)
CALLBACKS = Counter(
    "followup_callbacks_received", "Provider callbacks and events received (authentic ones)", ["source"]
)
VERDICTS = Counter("followup_verdicts", "Red-flag verdicts on replies, by level and deciding layer", ["level", "layer"])
DETECTOR_SECONDS = Histogram("followup_detector_seconds", "Time to read one reply for red flags", buckets=_FAST)
WEBHOOK_SECONDS = Histogram(
    "followup_webhook_request_seconds", "Time to answer a provider webhook, by route", ["route"], buckets=_FAST
)
WEBHOOKS_OUT = Counter(
    "followup_webhooks_out", "Outbound webhook attempts, by endpoint and outcome", ["endpoint", "outcome"]
)
WEBHOOK_OUT_SECONDS = Histogram(
    "followup_webhook_out_seconds", "Time an outbound webhook receiver took to answer", ["endpoint"], buckets=_FAST
)
VOICE_CALLS = Counter("followup_voice_calls", "Phone calls for unacknowledged emergencies, by outcome", ["outcome"])


@dataclass(frozen=True)
class DbFigures:
    """What the database says at scrape time (followup/services/ops.py reads it)."""

    messages: dict[tuple[str, str], int] = field(default_factory=dict)  # (state, channel) -> count
    backlog: int = 0  # due and not yet claimed
    backlog_age_seconds: float = 0.0  # how long the oldest of them has been due
    replies_waiting: int = 0  # stored replies not yet acted on
    open_escalations: dict[str, int] = field(default_factory=dict)  # tier -> open (unacknowledged)
    ack_breaches: dict[str, int] = field(default_factory=dict)  # tier -> open past the acknowledgement clock
    webhooks_pending: int = 0
    webhooks_failed: int = 0
    dispatcher_age_seconds: float | None = None  # since the newest heartbeat; None: no dispatcher ever ran


class _Figures(Collector):
    def __init__(self, f: DbFigures) -> None:
        self.f = f

    def collect(self) -> Iterator[Metric]:
        f = self.f
        m = GaugeMetricFamily("followup_messages", "Messages by state and channel", labels=["state", "channel"])
        for (state, channel), n in sorted(f.messages.items()):
            m.add_metric([state, channel], n)
        yield m
        yield GaugeMetricFamily("followup_backlog_messages", "Messages due and not yet sent", value=f.backlog)
        yield GaugeMetricFamily(
            "followup_backlog_age_seconds", "How long the oldest due message has waited", value=f.backlog_age_seconds
        )
        yield GaugeMetricFamily("followup_replies_waiting", "Replies stored and not yet acted on", f.replies_waiting)
        e = GaugeMetricFamily("followup_escalations_open", "Open (unacknowledged) escalations by tier", labels=["tier"])
        for tier, n in sorted(f.open_escalations.items()):
            e.add_metric([tier], n)
        yield e
        b = GaugeMetricFamily(
            "followup_escalations_ack_overdue", "Open escalations past their acknowledgement clock", labels=["tier"]
        )
        for tier, n in sorted(f.ack_breaches.items()):
            b.add_metric([tier], n)
        yield b
        yield GaugeMetricFamily("followup_webhooks_pending", "Outbound webhooks not yet delivered", f.webhooks_pending)
        yield GaugeMetricFamily("followup_webhooks_failed", "Outbound webhooks given up on", f.webhooks_failed)
        if f.dispatcher_age_seconds is not None:
            yield GaugeMetricFamily(
                "followup_dispatcher_last_pass_age_seconds",
                "Seconds since any dispatcher last finished a pass",
                f.dispatcher_age_seconds,
            )


def exposition(figures: DbFigures) -> bytes:
    """The text a scrape gets: this process's (or, in multi-process mode, every process's) counters and
    histograms, then the database's figures."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    db = CollectorRegistry(auto_describe=False)
    db.register(_Figures(figures))
    return generate_latest(counted) + generate_latest(db)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
