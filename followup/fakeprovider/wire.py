"""Plain request and response values passed between the HTTP handler and the fake's routes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes

    def form(self) -> dict[str, str]:
        """The form-encoded body, last value winning (all the fields we read are single-valued)."""
        pairs = parse_qs(self.body.decode("utf-8", errors="replace"), keep_blank_values=True)
        return {k: v[-1] for k, v in pairs.items()}

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stall_s: float = 0.0
    """Sleep this long before writing the answer (the `timeout_rate` fault)."""


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, "application/json", dict(headers or {}))
