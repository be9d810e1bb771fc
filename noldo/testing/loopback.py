"""The one loopback HTTP server every fake is built on: 127.0.0.1, a free port, one daemon thread a request.

``with Fake(...) as fake:`` serves in a background thread and shuts the server down and closes its
socket on exit; ``fake.serve_forever()`` serves in the calling thread instead (a child process that
only runs the fake, as benchmark/perf/ee_build.py does).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # a burst of 40 concurrent Earth Engine clients must not be refused
    daemon_threads = True


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and sends whole bodies."""

    def log_message(self, *args) -> None:
        pass

    def send_body(self, code: int, body: bytes | str, ctype: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
        """Answer ``code`` with ``body`` (Content-Type, Content-Length and any extra ``headers``)."""
        body = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LoopbackServer:
    """A server on 127.0.0.1 at a free port; ``url`` is its address followed by ``path``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], path: str = "") -> None:
        self.server = _Server(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{path}"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until the process ends or ``server.shutdown()`` is called."""
        try:
            self.server.serve_forever()
        finally:
            self.server.server_close()
