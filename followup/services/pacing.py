"""Per-sender pacing: at most `rate` sends a second from one number or address, shared by all threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class SenderPacer:
    def __init__(
        self,
        rate_per_second: float,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = 1.0 / rate_per_second
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self._sleep, self._monotonic = sleep, monotonic

    def wait(self, sender: str) -> None:
        """Block until `sender` may send again; reserves the slot before sleeping so threads queue fairly."""
        with self._lock:
            now = self._monotonic()
            slot = max(now, self._next.get(sender, now))
            self._next[sender] = slot + self.interval
        if slot > now:
            self._sleep(slot - now)
