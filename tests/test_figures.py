"""The overview's figures (followup/core/figures.py), worked out from plain rows: no database, no clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from followup.core.figures import REPLY_WINDOW, Rows, summarise, trend_of, week_of, weeks_to
from followup.core.vocab import Trend

LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)  # Wednesday 10:00 in Los Angeles
THIS_WEEK, LAST_WEEK = date(2026, 11, 23), date(2026, 11, 16)


def rows(
    *,
    status_counts: Mapping[str, int] | None = None,
    escalations: Sequence[tuple[datetime, str]] = (),
    active_statuses: Sequence[str] = (),
    checkins: Sequence[tuple[int | None, datetime | None]] = (),
    failures: Sequence[datetime] = (),
    replies: Sequence[tuple[int, datetime, str | None]] = (),
    patients: Mapping[int, str] | None = None,
) -> Rows[str]:
    """Rows with nothing in them but what a test names; patients are plain names."""
    return Rows(
        status_counts=status_counts or {},
        enrolled=0,
        unreachable=0,
        non_responders=0,
        escalations=escalations,
        active_statuses=active_statuses,
        checkins=checkins,
        failures=failures,
        replies=replies,
        patients=patients or {},
    )


def test_weeks_start_on_the_clinic_local_monday() -> None:
    """Sunday 23:30 in Los Angeles (Monday 07:30 UTC) still belongs to the week before."""
    assert week_of(datetime(2026, 11, 23, 7, 30, tzinfo=UTC), LA) == LAST_WEEK
    assert week_of(datetime(2026, 11, 23, 8, 0, tzinfo=UTC), LA) == THIS_WEEK
    assert weeks_to(NOW, LA, 3) == [date(2026, 11, 9), LAST_WEEK, THIS_WEEK]


def test_escalations_are_counted_by_week_and_tier() -> None:
    """Each escalation counts once, in its local week, under its tier; every week of the window is present."""
    o = summarise(
        rows(escalations=[(NOW, "urgent"), (NOW, "urgent"), (NOW - timedelta(days=7), "emergency")]),
        weeks_to(NOW, LA, 2),
        LA,
    )
    assert o.escalations_by_week == {LAST_WEEK: {"emergency": 1}, THIS_WEEK: {"urgent": 2}}


@pytest.mark.parametrize(
    ("reply_after", "answered"),
    [
        (None, False),
        (timedelta(0), False),  # a reply at the very moment of sending is not an answer to it
        (timedelta(minutes=1), True),
        (REPLY_WINDOW, True),  # the window is inclusive
        (REPLY_WINDOW + timedelta(seconds=1), False),
    ],
)
def test_a_checkin_is_answered_by_a_reply_within_the_window(reply_after: timedelta | None, answered: bool) -> None:
    """A check-in counts as answered by any reply after it and at most REPLY_WINDOW later."""
    sent = NOW - timedelta(days=4)
    replies = [] if reply_after is None else [(7, sent + reply_after, None)]
    o = summarise(rows(checkins=[(7, sent)], replies=replies), weeks_to(NOW, LA, 1), LA)
    assert (o.answered, o.asked) == (int(answered), 1)
    assert o.response_rate == (1.0 if answered else 0.0)


def test_another_patients_reply_does_not_answer_a_checkin() -> None:
    """Only the patient's own reply answers their check-in."""
    sent = NOW - timedelta(days=4)
    o = summarise(rows(checkins=[(7, sent)], replies=[(8, sent + timedelta(hours=1), None)]), [THIS_WEEK], LA)
    assert (o.answered, o.asked) == (0, 1)


def test_no_checkin_asked_has_no_response_rate() -> None:
    """With nothing asked the rate is unknown, not zero; check-ins with no patient or time are skipped."""
    o = summarise(rows(checkins=[(None, NOW), (7, None)]), [THIS_WEEK], LA)
    assert (o.response_rate, o.asked) == (None, 0)


def test_failures_are_counted_in_total_and_by_week() -> None:
    """Every failure counts in the total; the weekly figures show the weeks of the window."""
    o = summarise(rows(failures=[NOW, NOW, NOW - timedelta(days=7)]), weeks_to(NOW, LA, 2), LA)
    assert o.failures == 3 and o.failures_by_week == {LAST_WEEK: 1, THIS_WEEK: 2}


def test_counts_come_from_patient_and_escalation_statuses() -> None:
    """Active and escalated patients by status; open escalations are the active ones, unacknowledged the open."""
    o = summarise(
        rows(
            status_counts={"active": 4, "escalated": 2, "paused": 1}, active_statuses=["open", "acknowledged", "open"]
        ),
        [THIS_WEEK],
        LA,
    )
    assert (o.active, o.escalated, o.open_escalations, o.unacknowledged) == (4, 2, 3, 2)


def test_trends_list_patients_latest_answer_first() -> None:
    """Each patient with trend answers appears once, answers oldest first, the most recent answerer on top."""
    t1, t2, t3 = NOW - timedelta(hours=3), NOW - timedelta(hours=2), NOW - timedelta(hours=1)
    o = summarise(
        rows(
            replies=[(1, t3, Trend.WORSE), (1, t1, Trend.SAME), (2, t2, Trend.BETTER), (3, t3, None)],
            patients={1: "Ana", 2: "Ben", 3: "Cy"},
        ),
        [THIS_WEEK],
        LA,
    )
    assert o.trends == [("Ana", [(t1, "same"), (t3, "worse")]), ("Ben", [(t2, "better")])]
    assert o.trend_by_week == {THIS_WEEK: {"same": 1, "worse": 1, "better": 1}}


@pytest.mark.parametrize(
    ("meta", "trend"),
    [(None, None), ({}, None), ({"trend": "better"}, Trend.BETTER), ({"trend": "sideways"}, None)],
)
def test_trend_of_reads_only_known_trends(meta: dict[str, str] | None, trend: Trend | None) -> None:
    """A reply's trend is read from its meta; anything but better / same / worse is no trend."""
    assert trend_of(meta) == trend


@pytest.mark.parametrize(
    ("sent_ago", "answered_after", "expected"),
    [
        (timedelta(days=1), timedelta(hours=2), (1, 1, 0)),  # answered yesterday: counts at once
        (timedelta(days=1), None, (0, 0, 1)),  # still inside its three days: pending, not missed
        (timedelta(days=4), None, (0, 1, 0)),  # past its three days: missed
        (REPLY_WINDOW, None, (0, 1, 0)),  # exactly three days: missed
    ],
    ids=["fresh-answer", "waiting", "missed", "window-edge"],
)
def test_checkins_inside_their_window_are_pending_until_answered(
    sent_ago: timedelta, answered_after: timedelta | None, expected: tuple[int, int, int]
) -> None:
    """(answered, asked, pending): an answer counts as soon as it comes; silence counts only once the window ends."""
    sent = NOW - sent_ago
    replies = [(7, sent + answered_after, "better")] if answered_after else []
    o = summarise(rows(checkins=[(7, sent)], replies=replies, patients={7: "Ana"}), [LAST_WEEK, THIS_WEEK], LA, NOW)
    assert (o.answered, o.asked, o.pending) == expected


def test_red_flag_replies_mark_the_trend_but_not_the_answers_chart() -> None:
    """A red-flag reply is the patient's latest mark, and the weekly better / same / worse chart ignores it."""
    replies = [(7, NOW - timedelta(days=2), "better"), (7, NOW - timedelta(hours=1), "red_flag")]
    o = summarise(rows(replies=replies, patients={7: "Ana"}), [THIS_WEEK], LA, NOW)
    assert o.trends == [("Ana", [(NOW - timedelta(days=2), "better"), (NOW - timedelta(hours=1), "red_flag")])]
    assert o.trend_by_week == {THIS_WEEK: {"better": 1}}
