"""The live agent: its start-up line says what it watches, which rules run and where the
output goes; SIGHUP and a change of its rules directory reload the rules in place (the
probes stay), a bad set is refused and the running one goes on, /metrics names the set."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from bench.helpers.agent import Agent, assert_clean_exit
from exporter.agent.reload import alerting_rules
from exporter.config.schema import CorrelateConfig
from exporter.correlate.engine import configured_rules
from tests.agent.test_reload import BROKEN, MINE

pytestmark = [pytest.mark.ebpf]


def logged(agent: Agent) -> list[dict]:
    return [json.loads(line) for line in agent.stderr_path.read_text().splitlines() if line.startswith("{")]


def wait_logged(agent: Agent, message: str, count: int = 1, limit_s: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + limit_s
    while True:
        found = [d for d in logged(agent) if d["msg"] == message]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def rules_info(agent: Agent) -> list[str]:
    return [
        key for key, value in agent.metrics().items() if key.startswith("provex_rules_info{") and value == 1
    ]


def test_startup_line_and_reload_in_place(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "shadow.yml").write_text(MINE)
    out = tmp_path / "out.jsonl"
    alerting = len(alerting_rules(configured_rules(CorrelateConfig(rules_dirs=[str(rules)]))))
    agent = Agent(tmp_path, "--rules-dir", str(rules), command="run", output=out)
    try:
        (running,) = wait_logged(agent, "agent running")
        assert running["monitor"] == "containers" and isinstance(running["cgroups"], int)
        assert "simple" in running["rule_names"] and running["rules"] == alerting == len(
            running["rule_names"]
        )
        assert running["output"] == f"file {out} (JSON lines)"
        assert running["health"] == f"127.0.0.1:{agent.port}"
        first = running["rules_digest"]
        assert rules_info(agent) == [f'provex_rules_info{{digest="{first}",rules="{alerting}"}}']

        agent.process.send_signal(signal.SIGHUP)  # nothing changed: reloaded, found the same
        (same,) = wait_logged(agent, "rules unchanged")
        assert same["reason"] == "SIGHUP" and agent.process.poll() is None

        (rules / "shadow.yml").write_text(MINE.replace("level: high", "level: critical"))
        (changed,) = wait_logged(agent, "rules reloaded")
        assert changed["reason"] == "rules directory changed" and changed["previous_digest"] == first
        second = changed["digest"]
        assert rules_info(agent) == [f'provex_rules_info{{digest="{second}",rules="{alerting}"}}']

        (rules / "broken.yml").write_text(BROKEN)
        (refused,) = wait_logged(agent, "rule reload refused: the running rules keep running")
        assert refused["level"] == "error" and refused["digest"] == second
        assert all(e.startswith(f"{rules / 'broken.yml'}:") for e in refused["errors"])
        assert rules_info(agent) == [f'provex_rules_info{{digest="{second}",rules="{alerting}"}}']
        assert agent.process.poll() is None
        assert len(wait_logged(agent, "probes attached", limit_s=0)) == 1  # compiled once
    finally:
        code = agent.stop()
    assert_clean_exit(code, agent.stderr_path)
