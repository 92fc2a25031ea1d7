"""Per-sender pacing as a pure rule (followup/core/pacing.py): how many sends a grant gets and when each starts, and
the guarantee that grants asked for in any order never put more than `burst - 1 + ceil(rate * w)` starts in a
window of `w` seconds. Plain numbers; `now` is an argument."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from followup.core.pacing import Pace, grant

TEN = Pace(10.0)  # one send every 0.1 s


@pytest.mark.parametrize(
    ("pace", "tat", "now", "want", "horizon", "count", "slots", "tat_after"),
    [
        # A bucket never used is full: the first send goes now, the next ones an interval apart.
        (TEN, None, 100.0, 3, 60.0, 3, [100.0, 100.1, 100.2], 100.3),
        # Quiet since its last send: the schedule starts again from now, nothing saved up.
        (TEN, 50.0, 100.0, 2, 60.0, 2, [100.0, 100.1], 100.2),
        # Another worker's grant runs until 101.0: this one queues behind it.
        (TEN, 101.0, 100.0, 2, 60.0, 2, [101.0, 101.1], 101.2),
        # Only the slots within the horizon are granted: 100.0 .. 100.5 is six of them.
        (TEN, None, 100.0, 10, 0.5, 6, [100.0, 100.1, 100.2, 100.3, 100.4, 100.5], 100.6),
        # The schedule is already past the horizon: nothing granted, nothing taken.
        (TEN, 130.0, 100.0, 5, 20.0, 0, [], 130.0),
        # Asking for nothing takes nothing.
        (TEN, 101.0, 100.0, 0, 60.0, 0, [], 101.0),
        # A burst of 3: three go at once after a quiet spell, then one an interval.
        (Pace(10.0, burst=3), None, 100.0, 5, 60.0, 5, [100.0, 100.0, 100.0, 100.1, 100.2], 100.5),
        # A horizon of zero grants only what may go at once: the burst.
        (Pace(10.0, burst=3), None, 100.0, 5, 0.0, 3, [100.0, 100.0, 100.0], 100.3),
        # A clock read behind the schedule gives nothing back.
        (TEN, 100.5, 100.0, 1, 60.0, 1, [100.5], 100.6),
    ],
)
def test_grant_counts_and_slots(
    pace: Pace,
    tat: float | None,
    now: float,
    want: int,
    horizon: float,
    count: int,
    slots: list[float],
    tat_after: float,
) -> None:
    """A grant takes what fits before the horizon, slotted an interval apart from max(schedule, now)."""
    g = grant(pace, tat, now, want, horizon)
    assert g.count == count
    assert g.slots(pace, now) == pytest.approx(slots)
    assert g.tat == pytest.approx(tat_after)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Pace(0.0), "rate"),
        (lambda: Pace(-1.0), "rate"),
        (lambda: Pace(1.0, burst=0), "burst"),
        (lambda: grant(TEN, None, 0.0, -1, 1.0), "want"),
        (lambda: grant(TEN, None, 0.0, 1, -1.0), "horizon"),
    ],
)
def test_bad_values_are_refused_naming_the_field(make: object, field: str) -> None:
    """A rate, burst, want or horizon out of range is refused with the field's name."""
    with pytest.raises(ValueError, match=field):
        make()  # type: ignore[operator]


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([1.0, 3.0, 9.0, 10.0, 250.0]),
    burst=st.integers(1, 5),
    asks=st.lists(
        st.tuples(st.floats(0.0, 2.0), st.integers(0, 40), st.floats(0.0, 30.0)),  # (clock step, want, horizon)
        min_size=1,
        max_size=40,
    ),
)
def test_no_window_holds_more_starts_than_the_rate_allows(
    rate: float, burst: int, asks: list[tuple[float, int, float]]
) -> None:
    """Whatever workers ask for, and when: any 1-s window holds at most burst - 1 + ceil(rate) slots, and no slot is
    later than its grant's horizon."""
    pace = Pace(rate, burst)
    tat: float | None = None
    now = 1_000.0
    starts: list[float] = []
    for step, want, horizon in asks:
        now += step
        g = grant(pace, tat, now, want, horizon)
        slots = g.slots(pace, now)
        assert len(slots) == g.count <= want
        assert all(now <= s <= now + horizon + 1e-9 for s in slots)
        starts += slots
        tat = g.tat
    starts.sort()
    most = burst - 1 + math.ceil(rate)
    for i, first in enumerate(starts):
        in_window = sum(1 for s in starts[i:] if s < first + 1.0 - 1e-9)
        assert in_window <= most, (first, in_window, most)
