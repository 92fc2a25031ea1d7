"""The typed vocabulary (followup/core/vocab.py): one tier ordering, levels from tiers, the recurring sets, and
members that stand for the strings the database stores."""

from __future__ import annotations

import json

import pytest

from followup.core.vocab import (
    ACTIVE_ESCALATION,
    NOT_CLOSED,
    OPEN_STATES,
    PROGRAM_KINDS,
    TERMINAL_STATES,
    TIERS,
    EscalationStatus,
    Level,
    MessageKind,
    MessageState,
    Tier,
    level_of,
    more_serious,
    most_serious,
    queue_rank,
    tier_rank,
)


def test_tiers_are_ordered_most_serious_first() -> None:
    """Emergency outranks urgent, which outranks routine; the rank is the position in TIERS."""
    assert TIERS == (Tier.EMERGENCY, Tier.URGENT, Tier.ROUTINE)
    assert [tier_rank(t) for t in ("emergency", "urgent", "routine")] == [0, 1, 2]
    assert sorted(["routine", "emergency", "urgent"], key=tier_rank) == ["emergency", "urgent", "routine"]


@pytest.mark.parametrize(
    ("tier", "than", "expected"),
    [
        ("emergency", "urgent", True),
        ("urgent", "routine", True),
        ("emergency", "routine", True),
        ("urgent", "urgent", False),
        ("routine", "urgent", False),
        ("urgent", "emergency", False),
    ],
)
def test_more_serious_is_strict(tier: str, than: str, expected: bool) -> None:
    """A tier is more serious than another only when it ranks strictly higher (the same tier is not)."""
    assert more_serious(tier, than=than) is expected


@pytest.mark.parametrize(
    ("tiers", "expected"),
    [
        (["routine"], Tier.ROUTINE),
        (["routine", "urgent"], Tier.URGENT),
        (["urgent", "routine", "emergency", "urgent"], Tier.EMERGENCY),
    ],
)
def test_most_serious_picks_the_highest_tier(tiers: list[str], expected: Tier) -> None:
    """The most serious of several tiers is the one an escalation takes."""
    assert most_serious(tiers) is expected


def test_an_unknown_tier_is_an_error_but_sorts_last_in_the_queue() -> None:
    """tier_rank refuses a tier it does not know; queue_rank puts a stored unknown tier after routine."""
    with pytest.raises(ValueError, match="unknown tier"):
        tier_rank("critical")
    assert queue_rank("critical") > queue_rank("routine") > queue_rank("urgent") > queue_rank("emergency")


@pytest.mark.parametrize(
    ("tier", "level"), [("emergency", Level.EMERGENCY), ("urgent", Level.RED_FLAG), ("routine", Level.RED_FLAG)]
)
def test_level_follows_from_the_tier(tier: str, level: Level) -> None:
    """An emergency tier is an emergency, any other tier a red flag."""
    assert level_of(tier) is level


def test_no_tier_is_no_level() -> None:
    """Without a tier there is nothing to escalate."""
    assert level_of(None) is Level.NONE


def test_members_equal_hash_and_serialise_as_their_strings() -> None:
    """A member is interchangeable with the stored string: equality, dict keys, JSON and formatting."""
    assert Tier.URGENT == "urgent" and {"urgent": 1}[Tier.URGENT] == 1 and "urgent" in {Tier.URGENT}
    assert json.dumps({"tier": Tier.URGENT}) == '{"tier": "urgent"}'
    assert f"esc:1:{Tier.URGENT}:{MessageKind.ALERT}" == "esc:1:urgent:alert"


def test_the_recurring_sets() -> None:
    """Active escalations are open or acknowledged; not closed adds booked; message states split open/terminal."""
    assert set(ACTIVE_ESCALATION) == {"open", "acknowledged"}
    assert set(NOT_CLOSED) == {"open", "acknowledged", "booked"}
    assert set(OPEN_STATES) | set(TERMINAL_STATES) | {MessageState.SENT} == set(MessageState)
    assert not set(OPEN_STATES) & set(TERMINAL_STATES)
    assert set(PROGRAM_KINDS) == {"welcome", "tip", "checkin", "closing"}
    assert set(EscalationStatus) - set(NOT_CLOSED) == {EscalationStatus.CLOSED}
