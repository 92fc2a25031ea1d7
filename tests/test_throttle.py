"""The pure rules behind staff sign-in limits: the failure back-off, the bounded slots for password hashing, and
second-factor codes. Plain values, no database, no clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from followup.core.throttle import Backoff, Busy, Failures, Slots
from followup.core.totp import code_at, matching_step, new_secret, uri
from followup.services.throttle import POLICIES

T = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
S = timedelta(seconds=1)
RULE = Backoff(free=3, base=2 * S, cap=60 * S, forget=600 * S)


@pytest.mark.parametrize(
    ("count", "wait"),
    [(0, 0), (2, 0), (2.4, 0), (2.6, 2), (3, 2), (4, 4), (5, 8), (7, 32), (8, 60), (9, 60), (500, 60)],
)
def test_waits_start_after_the_free_failures_double_and_stop_at_the_cap(count: float, wait: int) -> None:
    """No wait within the free failures; then 2 s, 4 s, 8 s... and never more than the cap."""
    assert RULE.wait(count) == wait * S


def test_failures_are_forgotten_one_per_period() -> None:
    """One failure is forgotten per `forget` without a new one; a count never goes below zero."""
    seen = Failures(4.0, T)
    assert RULE.forgotten(seen, T) == 4.0
    assert RULE.forgotten(seen, T + 600 * S) == 3.0
    assert RULE.forgotten(seen, T + 1500 * S) == 1.5
    assert RULE.forgotten(seen, T + 100_000 * S) == 0.0
    assert RULE.forgotten(None, T) == 0.0


def test_the_count_stops_where_the_wait_is_already_at_its_cap() -> None:
    """Failures past the point where the wait is capped are not counted further, so an attacker's flood ends
    once it stops (a count never needs longer than `horizon` to reach zero)."""
    seen = None
    for _ in range(1000):
        seen = RULE.failed(seen, T)
    assert seen is not None and seen.count == RULE.most
    assert RULE.wait(RULE.most) == RULE.cap and RULE.wait(RULE.most - 1) == RULE.cap
    assert RULE.forgotten(seen, T + RULE.horizon) == 0.0


def test_retry_after_counts_down_from_the_last_failure() -> None:
    """The wait runs from the last failure: half-way through, half is left; after it, nothing."""
    seen = Failures(5.0, T)  # 8 s
    assert RULE.retry_after(seen, T) == 8 * S
    assert RULE.retry_after(seen, T + 3 * S) == 5 * S
    assert RULE.retry_after(seen, T + 9 * S) == timedelta(0)
    assert RULE.retry_after(None, T) == timedelta(0)


def test_an_attacker_trying_at_every_opening_never_waits_more_than_the_cap() -> None:
    """Trying as soon as allowed, the waits grow 2, 4, 8... and then stay at the cap: no lockout longer than it."""
    seen, now, waits = None, T, []
    for _ in range(12):
        seen = RULE.failed(seen, now)
        wait = RULE.retry_after(seen, now)
        waits.append(int(wait.total_seconds()))
        now += wait
    assert waits == [0, 0, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60]


def test_one_wrong_try_every_quarter_hour_does_not_build_up() -> None:
    """A day of the attack that kept the old lockout closed (one wrong try every 15 minutes): after each try the
    account waits at most the 15-minute cap, so it is open again when the next try comes; nothing adds up."""
    account = POLICIES["account"]
    seen, now = None, T
    for _ in range(96):  # a whole day of it
        seen = account.failed(seen, now)
        now += timedelta(minutes=15)
    assert seen is not None and account.retry_after(seen, now) == timedelta(0)
    assert account.wait(seen.count) <= account.cap == timedelta(minutes=15)


@pytest.mark.parametrize("kind", sorted(POLICIES))
def test_every_policy_lets_an_owner_mistype_and_caps_its_wait(kind: str) -> None:
    """Each kind of key allows a few failures with no wait at all, and no wait is longer than 15 minutes."""
    policy = POLICIES[kind]
    assert policy.free >= 5 and policy.wait(policy.free - 1) == timedelta(0)
    assert policy.cap <= timedelta(minutes=15) and policy.wait(10_000) == policy.cap


def test_slots_refuse_at_once_when_all_are_taken() -> None:
    """With every slot held, `take` raises Busy straight away; a released slot can be taken again."""
    slots = Slots(2)
    with slots.take(), slots.take():
        with pytest.raises(Busy):
            slots.take()
        assert slots.in_use == 2
    with slots.take():
        pass
    assert (slots.taken, slots.refused, slots.in_use, slots.peak) == (3, 1, 0, 2)


def test_slots_never_hold_more_than_their_size_under_threads() -> None:
    """Many threads taking slots at once: the most ever held is the size, and every attempt either ran or was
    refused."""
    slots = Slots(3)
    start = threading.Barrier(24)
    ran: list[int] = []

    def worker() -> None:
        start.wait()
        for _ in range(50):
            try:
                with slots.take():
                    ran.append(1)
            except Busy:
                pass

    threads = [threading.Thread(target=worker) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert slots.peak <= 3 and slots.in_use == 0
    assert len(ran) == slots.taken and slots.taken + slots.refused == 24 * 50


def test_a_code_matches_its_step_and_its_neighbours_only() -> None:
    """A code works in its 30-second step and one either side, not two steps away, and not after its step was
    used (`after`)."""
    secret = new_secret()
    code = code_at(secret, T)
    step = matching_step(secret, code, T)
    assert step is not None
    assert matching_step(secret, code, T + timedelta(seconds=30)) == step
    assert matching_step(secret, code, T - timedelta(seconds=30)) == step
    assert matching_step(secret, code, T + timedelta(seconds=90)) is None
    assert matching_step(secret, code, T, after=step) is None
    assert matching_step(secret, code[:3] + " " + code[3:], T) == step  # as an app shows it, "123 456"


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12345\x00", "١٢٣٤٥٦"])
def test_malformed_codes_match_nothing(code: str) -> None:
    """Anything but six ASCII digits is refused before any comparison."""
    assert matching_step(new_secret(), code, T) is None


def test_the_uri_names_the_clinic_and_the_account() -> None:
    """The otpauth URI carries the secret, the account and the clinic as issuer, for an app to show."""
    secret = new_secret()
    link = uri(secret, "nurse@clinic.example", "Achilles Neurology Clinic")
    assert link.startswith("otpauth://totp/") and f"secret={secret}" in link
    assert "nurse%40clinic.example" in link and "issuer=Achilles%20Neurology%20Clinic" in link
    assert len(secret) == 32
