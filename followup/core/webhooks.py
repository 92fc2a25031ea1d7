"""Signed outbound webhooks, the pure part: the Standard Webhooks signature, what a payload may carry, back-off.

Standard Webhooks (standardwebhooks.com): headers `webhook-id`, `webhook-timestamp` (Unix seconds) and
`webhook-signature: v1,<base64 HMAC-SHA256 over "<id>.<timestamp>.<body>">`, keyed with the base64 bytes after
`whsec_` in the endpoint's secret. Several space-separated signatures may appear (during a key rotation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

# What only a trusted endpoint (the clinic's own EHR interface) may receive: the clinical content. Everyone else
# (a chat channel, a pager) gets that something happened, to which record, and where to look.
HEALTH_FIELDS = frozenset({"tier", "level", "criteria", "criteria_labels", "evidence", "note"})
TOLERANCE_SECONDS = 300


def secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header value for one request."""
    content = f"{msg_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: str, now: float) -> bool:
    """What a receiver does: a fresh timestamp and one matching v1 signature (constant-time comparison)."""
    low = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, given = low.get("webhook-id", ""), low.get("webhook-timestamp", ""), low.get("webhook-signature", "")
    if not (msg_id and ts.isdigit() and given):
        return False
    if abs(now - int(ts)) > TOLERANCE_SECONDS:
        return False
    expected = sign(secret, msg_id, int(ts), body).split(",", 1)[1]
    return any(
        hmac.compare_digest(sig.split(",", 1)[1], expected)
        for sig in given.split()
        if sig.startswith("v1,") and "," in sig
    )


def headers(secret: str, msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "user-agent": "followup-webhooks/1",
    }


def payload(event_id: str, event_type: str, at: datetime, data: dict[str, Any], trusted: bool) -> str:
    """The JSON body for one endpoint: `{id, type, timestamp, data}`; health fields only when `trusted`."""
    shown = {k: v for k, v in data.items() if trusted or k not in HEALTH_FIELDS}
    body = {"id": event_id, "type": event_type, "timestamp": at.isoformat(), "data": shown}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def backoff_seconds(attempt: int, base: float, ceiling: float) -> float:
    """Wait before attempt `attempt + 1`: base, 2x, 4x ... capped (no jitter: the batch is small and ordered)."""
    return float(min(ceiling, base * 2.0 ** max(0, attempt - 1)))


def retryable_status(status: int) -> bool:
    """Every non-2xx is retried (a receiver's 4xx is usually its own misconfiguration, soon fixed), except
    410 Gone, which Standard Webhooks reserves for "stop sending to this endpoint"."""
    return status != 410
