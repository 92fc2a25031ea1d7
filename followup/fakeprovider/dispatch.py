"""Background delivery of the fake's webhooks: a small timed job queue and a keep-alive HTTP poster."""

from __future__ import annotations

import heapq
import http.client
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from followup.fakeprovider.store import Store

log = logging.getLogger("followup.fakeprovider")

_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class Poster:
    """POSTs over keep-alive connections cached per thread; raises OSError/HTTPException on failure."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = timeout_s
        self._local = threading.local()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        conns: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = conns.pop(key, None)
        if conn is not None:
            try:
                return self._exchange(conns, key, conn, target, body, headers)
            except _STALE:
                pass  # the receiver closed an idle keep-alive connection: retry once on a new one
        return self._exchange(conns, key, self._connect(parts.scheme, parts.netloc), target, body, headers)

    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=self._timeout)
        if scheme == "http":
            return http.client.HTTPConnection(netloc, timeout=self._timeout)
        raise ValueError(f"unsupported webhook URL scheme {scheme!r}")

    def _exchange(
        self,
        conns: dict[tuple[str, str], http.client.HTTPConnection],
        key: tuple[str, str],
        conn: http.client.HTTPConnection,
        target: str,
        body: bytes,
        headers: dict[str, str],
    ) -> tuple[int, str]:
        try:
            conn.request("POST", target, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", errors="replace")
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            conns[key] = conn
        return resp.status, text


class Job(Protocol):
    def run(self) -> float | None:
        """Do one step; return the delay before the next step, or None when finished."""


class Scheduler:
    """Runs jobs when due on a few daemon threads; a job's steps never overlap, so their order holds."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._running = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stopping = False
        for i in range(self._workers):
            t = threading.Thread(target=self._loop, name=f"fakeprovider-webhooks-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 2.0) -> None:
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def submit(self, job: Job, delay_s: float = 0.0) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._seq), job))
            self._cond.notify()

    def clear(self) -> None:
        """Drop jobs not yet started (a reset must not let old callbacks leak into the next test)."""
        with self._cond:
            self._heap.clear()
            self._cond.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no job is queued or running; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._heap or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, job = heapq.heappop(self._heap)
                        self._running += 1
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
            try:
                delay = job.run()
            except Exception as exc:  # a bug in one job must not kill the worker
                log.error("webhook job failed: %s", type(exc).__name__)
                delay = None
            with self._cond:
                self._running -= 1
                if delay is not None and not self._stopping:
                    heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), job))
                self._cond.notify_all()


@dataclass
class Webhooks:
    """What a webhook job needs: where to count, how to post, how hard to retry."""

    store: Store
    poster: Poster
    attempts: int
    backoff_s: float

    def try_post(self, kind: str, url: str, body: bytes, headers: dict[str, str]) -> bool:
        """One delivery attempt; True on a 2xx answer. Counts outcomes, logs no content."""
        try:
            status, _ = self.poster.post(url, body, headers)
        except (OSError, http.client.HTTPException, ValueError):
            status = 0
        if 200 <= status < 300:
            self.store.count_webhook(f"{kind}_delivered")
            return True
        self.store.count_webhook(f"{kind}_failed_attempts")
        return False

    def retry_delay(self, kind: str, attempt: int) -> float | None:
        """Delay before attempt number `attempt + 1`, or None (counted and logged) once attempts run out."""
        if attempt < self.attempts:
            return self.backoff_s * 2 ** (attempt - 1)
        dropped = self.store.count_webhook(f"{kind}_dropped")
        log.warning("dropped a %s webhook after %d attempts (%d dropped so far)", kind, attempt, dropped)
        return None
