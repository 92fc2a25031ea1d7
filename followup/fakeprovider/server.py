"""HTTP plumbing: a threading stdlib server whose handler answers in one write and logs no content."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from followup.fakeprovider.wire import Request, Response, json_response

log = logging.getLogger("followup.fakeprovider")

MAX_BODY_BYTES = 10 * 1024 * 1024
App = Callable[[Request], Response]


class FakeHTTPServer(ThreadingHTTPServer):
    """Thread per connection (daemon threads); tracks open connections so `close_connections` can end them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # SendGrid's SDK opens a new connection for every request

    def __init__(self, address: tuple[str, int], app: App, stopping: threading.Event) -> None:
        self.app = app
        self.stopping = stopping
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut open keep-alive connections down, so their handler threads end."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):  # already gone
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # with Nagle, keep-alive answers stall ~40 ms on delayed ACKs
    timeout = 120.0  # idle keep-alive connections end after this
    server_version = "followup-fakeprovider"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        server = cast(FakeHTTPServer, self.server)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._write(json_response(411, {"error": "Content-Length required"}))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._write(json_response(413 if length > 0 else 400, {"error": "bad Content-Length"}))
            return
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        req = Request(self.command, split.path, parse_qs(split.query, keep_blank_values=True), self.headers, body)
        try:
            resp = server.app(req)
        except Exception as exc:  # answer 500 rather than drop the connection; log the type only
            log.error("fake provider route failed: %s", type(exc).__name__)
            resp = json_response(500, {"error": "internal error in the fake provider"})
        if resp.stall_s > 0:
            server.stopping.wait(resp.stall_s)
        self._write(resp)

    def _write(self, resp: Response) -> None:
        """Status line, headers and body in a single send."""
        reason = self.responses.get(resp.status, ("",))[0]
        lines = [
            f"HTTP/1.1 {resp.status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Length: {len(resp.body)}",
        ]
        if resp.content_type:
            lines.append(f"Content-Type: {resp.content_type}")
        lines.extend(f"{k}: {v}" for k, v in resp.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head + resp.body)
        except OSError:  # the client gave up (a timeout fault, usually)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines carry phone numbers in query strings."""

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("malformed HTTP request")
