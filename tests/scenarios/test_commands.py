"""`provex verify` and `provex demo` end to end: the real CLI, agent, kernel and containers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from exporter.correlate.loader import DEFAULT_RULES_DIR
from exporter.scenarios.demo import plan
from exporter.scenarios.lab import package_root, subprocess_env

pytestmark = [pytest.mark.ebpf, pytest.mark.containers, pytest.mark.slow]


def provex(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
        cwd=package_root(),
        check=False,
    )


def test_verify_passes_on_healthy_rules():
    # Generous --late-ms: this is about verdicts, not speed (no wall-clock assertions in tests).
    result = provex(
        "verify",
        "--rule",
        "container_unshare",
        "--rule",
        "sa_token_exfiltration",
        "--late-ms",
        "10000",
        "--json",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] and {r["rule"]: r["status"] for r in doc["rules"]} == {
        "container_unshare": "fired",
        "sa_token_exfiltration": "fired",
    }
    assert all(r["latency_ms"] > 0 for r in doc["rules"])


def test_verify_fails_for_a_disabled_and_a_broken_rule(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, rules)
    # Broken: the shadow entry of the rule's list no longer matches the file it must catch.
    broken = rules / "host_sensitive_file_read.yml"
    text = broken.read_text()
    assert "        - /etc/shadow\n" in text
    broken.write_text(text.replace("        - /etc/shadow\n", "        - /etc/shadow-typo\n"))
    result = provex(
        "verify",
        "--set", "correlate.default_rules=false",
        "--rules-dir", str(rules),
        "--set", "correlate.disabled_rules=[container_setns]",
        "--rule", "container_setns", "--rule", "host_sensitive_file_read", "--rule", "container_mount",
        "--timeout", "3",
        "--late-ms", "10000",
        "--json",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    statuses = {r["rule"]: r["status"] for r in json.loads(result.stdout)["rules"]}
    assert statuses == {
        "container_setns": "missed",
        "host_sensitive_file_read": "missed",
        "container_mount": "fired",
    }


def test_verify_refuses_a_bad_config_with_status_2():
    result = provex("verify", "--set", "correlate.no_such_key=1", "--rule", "container_mount")
    assert result.returncode == 2
    assert "no_such_key" in result.stderr


def test_demo_detects_every_attack_and_nothing_benign():
    result = provex("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    attacks = sum(s.kind == "attack" for s in plan())
    benign = sum(s.kind == "benign" for s in plan())
    assert f"attacks detected     {attacks}/{attacks}" in result.stdout
    assert f"benign workloads     {benign}/{benign} raised no alert" in result.stdout
    assert "scenarios/cat-then-wget-0" in result.stdout  # the alert row names the Pod
