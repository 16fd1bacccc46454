"""/healthz is a watchdog over the event loop; /readyz reports degraded dependencies without
failing; the server binds 127.0.0.1 unless told otherwise, and can serve TLS and guard /metrics."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from exporter.agent.health import HealthState, serve
from exporter.config.schema import ServerConfig
from exporter.scenarios.agent import free_port
from tests.helpers.tls import self_signed


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def get(
    url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_liveness_follows_the_heartbeat() -> None:
    clock = Clock()
    state = HealthState(stall_after_s=5, clock=clock)
    assert state.liveness() == (False, "starting: the event loop has not run yet")
    state.beat()
    clock.now += 4.9
    assert state.liveness()[0]
    clock.now += 0.2
    alive, why = state.liveness()
    assert not alive and why == "stalled: the event loop has not turned for 5.1 s (bound 5 s)"
    state.beat()
    assert state.liveness()[0]


def test_a_stalled_loop_fails_healthz_and_readyz_but_a_degraded_dependency_does_not() -> None:
    state = HealthState(stall_after_s=0.3)
    state.dependencies["apiserver"] = lambda: "no Pod watch: events carry container ids only"
    state.dependencies["collector"] = lambda: None
    port = free_port()
    server = serve(f"127.0.0.1:{port}", state)
    stalled = threading.Event()

    def loop() -> None:  # the event loop: turns until it gets stuck (e.g. a drain that never ends)
        while not stalled.is_set():
            state.beat()
            time.sleep(0.01)

    worker = threading.Thread(target=loop, daemon=True)
    try:
        base = f"http://127.0.0.1:{port}"
        assert get(base + "/healthz")[0] == 503  # not started yet: the startup probe waits
        worker.start()
        state.ready.set()
        time.sleep(0.05)
        assert get(base + "/healthz")[0] == 200
        code, body = get(base + "/readyz")
        assert code == 200  # a degraded API server is reported, not fatal
        assert "[-]apiserver degraded: no Pod watch: events carry container ids only" in body
        assert "[+]collector ok" in body
        assert body.strip().endswith("ready (degraded: apiserver)")
        stalled.set()
        deadline = time.monotonic() + 5
        while get(base + "/healthz")[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        code, body = get(base + "/healthz")
        assert code == 503 and body.startswith("stalled: the event loop has not turned for")
        assert get(base + "/readyz")[0] == 503
    finally:
        stalled.set()
        server.shutdown()


def test_a_bare_port_binds_loopback_only() -> None:
    port = free_port()
    server = serve(f":{port}", HealthState())
    try:
        assert server.server_address[0] == "127.0.0.1"
        addresses = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
        for address in addresses - {"127.0.0.1", "127.0.1.1"}:
            with pytest.raises(OSError), socket.create_connection((address, port), timeout=1):
                pass
    finally:
        server.shutdown()


def test_tls_and_a_metrics_token(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    port = free_port()
    config = ServerConfig(
        health_addr=f"127.0.0.1:{port}", tls_cert_file=cert, tls_key_file=key, metrics_token_file=str(token)
    )
    state = HealthState()
    state.beat()
    server = serve(config, state)
    context = ssl.create_default_context(cafile=cert)
    context.check_hostname = False
    try:
        base = f"https://127.0.0.1:{port}"
        assert get(base + "/healthz", context=context)[0] == 200  # probes need no token
        assert get(base + "/metrics", context=context)[0] == 401
        assert get(base + "/metrics", {"Authorization": "Bearer wrong"}, context)[0] == 401
        code, body = get(base + "/metrics", {"Authorization": "Bearer s3cret"}, context)
        assert code == 200 and "provex_" in body
        token.write_text("rotated")  # a rotated Secret applies at once
        assert get(base + "/metrics", {"Authorization": "Bearer rotated"}, context)[0] == 200
        with pytest.raises(OSError):  # plain HTTP is not served
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        server.shutdown()
