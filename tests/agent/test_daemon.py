"""`provex run` as a daemon in named steps (exporter/agent/live.py: Agent.start, run, stop):
whatever step fails, the one shutdown path releases what was acquired before it. The loop
itself runs on a real kernel in tests/agent/test_live_*.py."""

from __future__ import annotations

import argparse
import signal
import socket
from collections.abc import Iterator

import pytest

from exporter.agent import live
from exporter.agent.build import StartupError
from exporter.config import load_config
from exporter.probes.loader import ProbeError


@pytest.fixture(autouse=True)
def _signals_restored() -> Iterator[None]:
    """Agent.start installs SIGTERM/SIGINT/SIGHUP handlers: give pytest its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _config(port: int):
    return load_config(overrides=[f"server.health_addr=127.0.0.1:{port}"])


def test_the_probes_failing_stops_the_health_server(monkeypatch) -> None:
    def no_bpf(_config):
        raise ProbeError("BPF is not permitted here")

    monkeypatch.setattr(live, "Probes", no_bpf)
    port = _free_port()
    agent = live.Agent(argparse.Namespace(command="run"), _config(port))
    with pytest.raises(live.StartFailed) as failed:
        agent.start()
    assert failed.value.exit_code == 1
    assert _listening(port)  # started before the probes ...
    assert agent.stop() == {}
    assert not _listening(port)  # ... and shut down by stop
    assert live.run(argparse.Namespace(command="run"), _config(port)) == 1
    assert not _listening(port)


class ClosingProbes:
    """Stands in for the loaded probes (which need root and BPF): only what `start` touches
    before the stages are built, and `close`."""

    file_identity = False

    def __init__(self, _config) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_stages_failing_close_the_probes_and_the_server(monkeypatch) -> None:
    made: list[ClosingProbes] = []
    monkeypatch.setattr(live, "Probes", lambda config: made.append(ClosingProbes(config)) or made[-1])
    monkeypatch.setattr(live.probe_metrics, "register", lambda probes: None)

    def bad_output(*_args, **_kw):
        raise StartupError("output: cannot write /nonexistent/x.jsonl")

    monkeypatch.setattr(live, "build_stages", bad_output)
    port = _free_port()
    assert live.run(argparse.Namespace(command="run"), _config(port)) == 2
    assert [p.closed for p in made] == [1]
    assert not _listening(port)


def test_a_bad_health_address_fails_before_anything_is_acquired(monkeypatch) -> None:
    monkeypatch.setattr(live, "Probes", lambda config: pytest.fail("probes attached after the server failed"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert live.run(argparse.Namespace(command="run"), _config(port)) == 2
