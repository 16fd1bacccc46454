"""/healthz, /readyz and /metrics on a small HTTP server of its own thread.

Liveness is a watchdog: the event loop stamps a heartbeat on every turn, and
/healthz fails when the last stamp is older than `server.stall_after_s` (and
until the loop first runs, which the chart's startupProbe waits for). A stalled
loop detects nothing, so the kubelet should restart it.

Readiness: the probes are attached and the loop turns. Dependencies (the API
server, the collector) are reported on /readyz as degraded without failing it:
the agent still detects, and a collector outage must not hold a rollout or
take the agent out of its metrics Service.

The server binds 127.0.0.1 unless an address says otherwise; with TLS files it
serves HTTPS, and with a token file /metrics wants `Authorization: Bearer`.
"""

from __future__ import annotations

import hmac
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST

from exporter.config.schema import ServerConfig
from exporter.metrics import render
from exporter.model.addresses import parse_host_port

log = logging.getLogger("provex.agent")

Check = Callable[[], str | None]  # None = fine, else why the dependency is degraded


class HealthState:
    """The loop's heartbeat, readiness, and the dependency checks /readyz reports."""

    def __init__(self, stall_after_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ready = threading.Event()
        self.stall_after_s = stall_after_s
        self.dependencies: dict[str, Check] = {}
        self._clock = clock
        self._beat: float | None = None

    def beat(self) -> None:
        """Called by the event loop on every turn (cheap: one clock read)."""
        self._beat = self._clock()

    def liveness(self) -> tuple[bool, str]:
        if self._beat is None:
            return False, "starting: the event loop has not run yet"
        age = self._clock() - self._beat
        if age > self.stall_after_s:
            return (
                False,
                f"stalled: the event loop has not turned for {age:.1f} s (bound {self.stall_after_s:g} s)",
            )
        return True, f"event loop turned {age:.1f} s ago"

    def readiness(self) -> tuple[bool, list[str]]:
        alive, why = self.liveness()
        attached = self.ready.is_set()
        lines = [f"[{'+' if attached else '-'}]probes {'attached' if attached else 'not attached'}"]
        lines.append(f"[{'+' if alive else '-'}]{why}")
        degraded = []
        for name, check in self.dependencies.items():
            try:
                reason = check()
            except Exception as exc:  # a broken check must not break the probe
                reason = f"check failed: {exc}"
            if reason:
                degraded.append(name)
                lines.append(f"[-]{name} degraded: {reason}")
            else:
                lines.append(f"[+]{name} ok")
        ok = attached and alive
        verdict = "ready" if ok else "not ready"
        lines.append(f"{verdict} (degraded: {', '.join(degraded)})" if degraded else verdict)
        return ok, lines


def _token(path: str) -> str:
    # Read per request: a rotated Secret's new token applies at once.
    return Path(path).read_text().strip() if path else ""


def serve(config: ServerConfig | str, state: HealthState) -> ThreadingHTTPServer:
    """Start the server on its own thread; OSError or ValueError if it cannot listen."""
    if isinstance(config, str):
        config = ServerConfig(health_addr=config)
    token_file = config.metrics_token_file
    if token_file and not _token(token_file):
        raise ValueError(f"server.metrics_token_file {token_file}: empty")

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a client that never finishes its request does not hold a thread

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                alive, why = state.liveness()
                self._reply(200 if alive else 503, (why + "\n").encode())
            elif path == "/readyz":
                ready, lines = state.readiness()
                self._reply(200 if ready else 503, ("\n".join(lines) + "\n").encode())
            elif path == "/metrics":
                if token_file and not hmac.compare_digest(
                    self.headers.get("Authorization", ""), f"Bearer {_token(token_file)}"
                ):
                    self._reply(401, b"unauthorized\n", extra={"WWW-Authenticate": "Bearer"})
                    return
                self._reply(200, render(), CONTENT_TYPE_LATEST)
            else:
                self._reply(404, b"not found\n")

        def _reply(
            self,
            code: int,
            body: bytes,
            content_type: str = "text/plain; charset=utf-8",
            extra: dict[str, str] | None = None,
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    host, port = parse_host_port(config.health_addr)
    server_class = _server_class(host, config)
    server = server_class((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="provex-health", daemon=True).start()
    bound = f"{host}:{server.server_address[1]}"
    scheme = "https" if config.tls_cert_file else "http"
    log.info("health server listening", extra={"fields": {"addr": bound, "scheme": scheme}})
    return server


def _server_class(host: str, config: ServerConfig) -> type[ThreadingHTTPServer]:
    context = None
    if config.tls_cert_file:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        def get_request(self) -> tuple[socket.socket, object]:
            sock, addr = super().get_request()
            if context is not None:
                # The handshake happens on the handler's thread, not on the accept loop.
                sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            return sock, addr

        def handle_error(self, request: object, client_address: object) -> None:
            # A client that fails the TLS handshake or hangs up is its own problem, not a traceback.
            log.debug(
                "health request failed", exc_info=True, extra={"fields": {"client": str(client_address)}}
            )

    return Server
