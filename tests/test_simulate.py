"""The time-travel simulator: a small cohort through the real services reports zero on every invariant, the CLI's
last line is the JSON summary, and the simulator's own checks do catch what they are meant to catch."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from conftest import ROOT, make_settings

from followup.cli.main import cli
from followup.clock import FakeClock
from followup.settings import Settings
from followup.simulator import INVARIANTS, Rates, SimConfig, simulate
from followup.simulator.cohort import Cohort, index_of, phone_of
from followup.simulator.provider import SimProvider
from followup.transports.base import Outgoing, RetryableSendError

KEYS = (
    "quiet_hour_violations",
    "duplicate_sends",
    "missed_escalations",
    "lost_messages",
    "messages_sent",
    "escalations",
    "wall_seconds",
)


@pytest.fixture
def base_settings() -> Settings:
    return make_settings("sqlite:///unused.db")


def test_small_cohort_across_dst_changes_keeps_every_invariant_at_zero(base_settings: Settings) -> None:
    """60 patients for 18 days over the US and EU DST changes, with many red flags and STOPs: all four are 0."""
    cfg = SimConfig(
        patients=60,
        days=18,
        seed=7,
        start=datetime(2027, 3, 12, 6, 0, tzinfo=UTC),  # US clocks change on 14 March, EU ones on 28 March
        rates=Rates(reply=0.8, red_flag=0.25, stop=0.05, fault=0.05, timeout=0.03),
    )
    summary = simulate(base_settings, cfg)
    assert {k: summary[k] for k in INVARIANTS} == dict.fromkeys(INVARIANTS, 0), summary["examples"]
    assert summary["enrolled"] == 60 and summary["messages_sent"] > 300
    assert summary["red_flag_replies"] > 0 and summary["escalations_by_source"].get("reply", 0) > 0
    assert summary["webhooks"]["duplicate_inbound"] > 0 and summary["webhooks"]["reordered_status_pairs"] > 0
    assert summary["provider_faults"]["5xx"] > 0 and summary["provider_faults"]["timeout"] > 0
    assert summary["errors_logged"] == 0
    assert summary["staff_actions"]["acknowledge"] > 0  # the clinic's side ran too
    assert set(summary["messages_by_channel_and_kind"]) == {"sms", "email"}


def test_cli_json_summary_is_the_last_line(tmp_path: object) -> None:
    """`followup simulate --json` ends with one JSON object holding the invariants and the headline figures."""
    settings_file = ROOT / "settings.toml"
    result = CliRunner().invoke(
        cli,
        [
            "--settings",
            str(settings_file),
            "simulate",
            "--patients",
            "12",
            "--days",
            "3",
            "--seed",
            "3",
            "--json",
            "--no-progress",
        ],
        obj={},
        env={"FOLLOWUP_SECURITY__SECRET_KEY": "simulate-test-" + "s" * 40},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert all(k in summary for k in KEYS)
    assert [summary[k] for k in INVARIANTS] == [0, 0, 0, 0]


def test_same_seed_same_run(base_settings: Settings) -> None:
    """Two runs with one seed send the same messages, whatever order the dispatcher's threads sent them in."""
    cfg = SimConfig(patients=15, days=4, seed=11)
    first, second = simulate(base_settings, cfg), simulate(base_settings, cfg)
    for key in ("messages_sent", "messages_by_channel_and_kind", "escalations_by_tier", "replies"):
        assert first[key] == second[key]


def test_reading_ahead_in_a_second_process_changes_no_outcome(base_settings: Settings) -> None:
    """Embedding replies ahead in a worker process gives the same run as embedding them inline, and is used."""
    cfg = SimConfig(patients=40, days=10, seed=5, rates=Rates(reply=0.9, red_flag=0.25))
    ahead = simulate(base_settings, cfg)
    inline = simulate(base_settings, replace(cfg, read_ahead=False))
    used = ahead.pop("read_ahead")
    assert "read_ahead" not in inline
    assert used["ahead"] > 0, used
    for key in ("wall_seconds", "wall_ms_per_patient", "peak_rss_mb"):
        ahead.pop(key), inline.pop(key)
    assert ahead == inline


def test_addresses_map_back_to_patients() -> None:
    """The patient index is read back from the number or address a message went to."""
    for i in (0, 1, 9, 10, 12_345, 99_999, 1_234_567):
        assert index_of(phone_of(i)) == i
        assert index_of(f"p{i}@sim.example") == i
    assert index_of("+13105550199") is None and index_of("oncall@clinic.example") is None


def provider_at(local: str, tz_name: str) -> tuple[SimProvider, int]:
    """A simulated provider whose clock shows `local` (HH:MM) for a patient living in `tz_name`."""
    cohort = Cohort(seed=1, size=1000, start=datetime(2027, 3, 1, tzinfo=UTC), enroll_span=timedelta(days=1))
    index = next(i for i in range(1000) if cohort.timezone(i) == tz_name)
    hour, minute = map(int, local.split(":"))
    when = datetime(2027, 3, 2, hour, minute, tzinfo=ZoneInfo(tz_name))
    window = (datetime.strptime("09:00", "%H:%M").time(), datetime.strptime("20:00", "%H:%M").time())
    return SimProvider(FakeClock(when), cohort, Rates(fault=0, timeout=0), 1, window), index


def test_oracle_counts_a_tip_sent_at_night_and_a_message_sent_twice() -> None:
    """A tip accepted at 03:00 local is a quiet-hour violation; the same id accepted twice is a duplicate."""
    provider, index = provider_at("03:00", "America/New_York")
    sms = provider.transports["sms"]
    tip = Outgoing(message_id=5, channel="sms", to=phone_of(index), body="tip", tags={"kind": "tip"})
    sms.send(tip)
    sms.send(tip)
    alert = Outgoing(message_id=6, channel="sms", to=phone_of(index), body="urgent", tags={"kind": "escalation"})
    sms.send(alert)
    assert provider.oracle.quiet_hour_violations == 2  # the tip, twice; the escalation may go at night
    assert provider.oracle.duplicate_ids == 1


def test_oracle_accepts_a_tip_inside_the_window_and_queues_its_callbacks() -> None:
    """A tip at 10:00 local is fine; its status callbacks are queued for later delivery."""
    provider, index = provider_at("10:00", "Europe/Berlin")
    provider.transports["sms"].send(
        Outgoing(message_id=9, channel="sms", to=phone_of(index), body="tip", tags={"kind": "tip"})
    )
    assert provider.oracle.quiet_hour_violations == 0
    assert provider.next_at() is not None


def test_simulated_timeout_may_have_reached_the_provider() -> None:
    """An ambiguous timeout after acceptance is found by the SMS lookup, so the dispatcher will not resend it."""
    provider, index = provider_at("10:00", "America/Chicago")
    provider.rates = Rates(fault=0, timeout=1.0)
    sms = provider.transports["sms"]
    seen_ids = []
    for message_id in range(1, 40):
        out = Outgoing(message_id=message_id, channel="sms", to=phone_of(index), body="x", tags={"kind": "system"})
        with pytest.raises(RetryableSendError) as err:
            sms.send(out)
        assert err.value.ambiguous
        seen_ids.append(sms.find_sent(out, datetime.now(UTC)) is not None)
    assert any(seen_ids) and not all(seen_ids)  # some reached the provider before timing out, some did not
