"""Delivery states a provider's events move a message through: forward only, a terminal state never left.

Callbacks arrive out of order ("delivered" before "sent") and more than once; `moves` says whether one may change
a message, and `fold` applies a batch of them, in arrival order, to the states the messages are in.
"""

from __future__ import annotations

from collections.abc import Iterable

from followup.core.vocab import MessageState

RANK = {MessageState.SCHEDULED: 0, MessageState.CLAIMED: 1, MessageState.SENDING: 2, MessageState.SENT: 3}


def allowed_from(target: str) -> list[str]:
    """The states a message may be in to move to `target`: `sent` only moves earlier states on; any non-terminal
    state may become terminal; a terminal state is never left."""
    if target == MessageState.SENT:
        return [str(st) for st, r in RANK.items() if r < RANK[MessageState.SENT]]
    return [str(st) for st in RANK]


def moves(current: str, target: str) -> bool:
    """Whether a message in `current` moves to `target`."""
    return current in allowed_from(target)


def fold(states: dict[int, str], events: Iterable[tuple[int, str]]) -> tuple[dict[int, str], list[bool]]:
    """The states after `events` ((message id, target state), in arrival order) from `states` (message id ->
    current state), and for each event whether it moved its message. Messages not in `states` are not moved."""
    now = dict(states)
    moved: list[bool] = []
    for message_id, target in events:
        current = now.get(message_id)
        ok = current is not None and moves(current, target)
        if ok:
            now[message_id] = target
        moved.append(ok)
    return now, moved
