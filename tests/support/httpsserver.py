"""An HTTPS server on loopback for MTA-STS policy tests (stdlib http.server in a thread).

It serves whatever the test puts in `responses` (path -> status, content type, body) with a
certificate the test chose (trustme), and counts requests, so a test can prove a cached
policy was not fetched again.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.server import free_port


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append((self.path, self.headers.get("Host", "")))
            status, ctype, body, extra = self.server.responses.get(
                self.path, (404, "text/plain", b"not found", {})
            )
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    lock: threading.Lock
    requests: list[tuple[str, str]]
    responses: dict[str, tuple[int, str, bytes, dict[str, str]]]


class HTTPSServer:
    def __init__(self, context: ssl.SSLContext) -> None:
        self.port = free_port()
        self._server = _Server(("127.0.0.1", self.port), _Handler, bind_and_activate=False)
        self._server.lock = threading.Lock()
        self._server.requests = []
        self._server.responses = {}
        self._server.server_bind()
        self._server.server_activate()
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def set(
        self,
        path: str,
        body: bytes,
        status: int = 200,
        ctype: str = "text/plain",
        headers: dict[str, str] | None = None,
    ) -> None:
        with self._server.lock:
            self._server.responses[path] = (status, ctype, body, headers or {})

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self._server.lock:
            return list(self._server.requests)

    def __enter__(self) -> HTTPSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
