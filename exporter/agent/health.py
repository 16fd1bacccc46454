"""/healthz, /readyz and /metrics on a small HTTP server of its own thread."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from exporter.metrics import render

log = logging.getLogger("provex.agent")


class HealthState:
    """Liveness: the event loop turned recently. Readiness: probes attached."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.alive = True


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"server.health_addr: expected HOST:PORT, got {addr!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(addr: str, state: HealthState) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._reply(200 if state.alive else 503, b"ok\n" if state.alive else b"stalled\n")
            elif self.path == "/readyz":
                ready = state.ready.is_set()
                self._reply(200 if ready else 503, b"ready\n" if ready else b"probes not attached\n")
            elif self.path == "/metrics":
                self._reply(200, render(), CONTENT_TYPE_LATEST)
            else:
                self._reply(404, b"not found\n")

        def _reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(parse_addr(addr), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="provex-health", daemon=True).start()
    log.info("health server listening", extra={"fields": {"addr": addr}})
    return server
