"""Outbound webhook requests: one small interface, an httpx implementation and a recording fake.

`post` returns the receiver's status code, or raises `PostFailed` when no answer came (refused, timed out).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

import httpx


class PostFailed(Exception):
    """The request got no HTTP answer; the reason names the kind of failure, never the URL's query."""


class WebhookPoster(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int: ...


class HttpxPoster:
    """POSTs with a timeout, no redirects followed (a redirect would resend the signed body elsewhere)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            return self._client.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError as exc:
            raise PostFailed(type(exc).__name__) from exc

    def close(self) -> None:
        self._client.close()


@dataclass
class Posted:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class RecordingPoster:
    """Keeps every request; answers 200, or the statuses queued with `answer_next` (an int, or None for no
    answer at all)."""

    posted: list[Posted] = field(default_factory=list)
    answers: list[int | None] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_next(self, *statuses: int | None) -> None:
        with self._lock:
            self.answers.extend(statuses)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        with self._lock:
            self.posted.append(Posted(url, body, dict(headers)))
            status = self.answers.pop(0) if self.answers else 200
        if status is None:
            raise PostFailed("ConnectError")
        return status
