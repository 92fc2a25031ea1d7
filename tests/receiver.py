"""A real HTTP receiver of signed outbound webhooks for tests: it checks each signature with its own code (not
ours), records every request, and fails on request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    webhook_id: str
    timestamp: str
    signature: str
    body: dict[str, Any]
    valid: bool
    answered: int


@dataclass
class Receiver:
    """Serves on 127.0.0.1; `url` takes posts. `fail_next(n, status)` answers the next n posts with `status`."""

    secret: str
    got: list[Received] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                msg_id = self.headers.get("webhook-id", "")
                ts = self.headers.get("webhook-timestamp", "")
                sig = self.headers.get("webhook-signature", "")
                valid = receiver.check(msg_id, ts, raw, sig)
                with receiver.lock:
                    status = receiver.failures.pop(0) if receiver.failures else (204 if valid else 401)
                    receiver.got.append(Received(msg_id, ts, sig, json.loads(raw or b"{}"), valid, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def check(self, msg_id: str, ts: str, raw: bytes, header: str) -> bool:
        """The Standard Webhooks check, written from the specification: HMAC-SHA256 of id.timestamp.body."""
        if not (msg_id and ts.isdigit()) or abs(time.time() - int(ts)) > 300:
            return False
        key = base64.b64decode(self.secret.split("_", 1)[1])
        expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + raw, hashlib.sha256).digest()).decode()
        return any(hmac.compare_digest(s.partition(",")[2], expected) for s in header.split() if s.startswith("v1,"))

    def fail_next(self, n: int, status: int = 500) -> None:
        with self.lock:
            self.failures.extend([status] * n)

    def of_type(self, event_type: str) -> list[Received]:
        with self.lock:
            return [r for r in self.got if r.body.get("type") == event_type]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
