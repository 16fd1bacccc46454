"""What `provex run` says once it runs, and the hint when no container shows up."""

from __future__ import annotations

import logging

import msgspec
import pytest

from exporter.agent.startup import NO_CONTAINER_HINT, NoContainerHint, describe_output, summary
from exporter.config import Config
from exporter.config.output import plan_output
from exporter.config.schema import OtlpConfig, OutputConfig


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("output", "terminal", "said"),
    [
        (OutputConfig(), True, "stdout (text)"),
        (OutputConfig(), False, "stdout (JSON lines)"),
        (OutputConfig(file="/var/log/provex.jsonl"), True, "file /var/log/provex.jsonl (JSON lines)"),
        (
            OutputConfig(schema="ecs", file="/var/log/p.ndjson"),
            False,
            "file /var/log/p.ndjson (ecs JSON lines)",
        ),
        (OutputConfig(schema="ocsf", format="otlp-json"), False, "stdout (ocsf OTLP-JSON)"),
        (
            OutputConfig(otlp=OtlpConfig(endpoint="http://collector:4317")),
            False,
            "OTLP grpc to http://collector:4317 (ecs)",
        ),
    ],
)
def test_the_output_is_said_as_decided(output: OutputConfig, terminal: bool, said: str) -> None:
    decided = plan_output(output, inherit_env=False, environ={}, terminal=terminal).output
    assert describe_output(decided) == said


def test_the_summary_names_what_is_watched_which_rules_and_where_output_goes() -> None:
    config = msgspec.convert({"server": {"health_addr": ":9464"}}, Config)
    config = msgspec.structs.replace(config, output=plan_output(config.output, environ={}).output)
    fields = summary(config, ["/kubepods", "/system.slice/docker-abc.scope"], ["b_rule", "a_rule"], "9d05c1")
    assert fields == {
        "monitor": "containers",
        "cgroups": 2,
        "cgroups_first": ["/kubepods", "/system.slice/docker-abc.scope"],
        "rules": 2,
        "rule_names": ["a_rule", "b_rule"],
        "rules_digest": "9d05c1",
        "output": "stdout (JSON lines)",
        "raw_events": True,
        "health": ":9464",
    }
    none_yet = summary(Config(), [], None)
    assert none_yet["cgroups"] == 0 and "none found yet" in none_yet["cgroups_note"]
    assert "rules" not in none_yet and none_yet["health"] == "off (--health-addr)"  # `provex record`
    assert "cgroups" not in summary(msgspec.convert({"probes": {"monitor": "all"}}, Config), [], [])


def test_a_hint_once_when_no_container_is_seen(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    quiet = NoContainerHint("containers", after_s=30, clock=clock)
    busy = NoContainerHint("containers", after_s=30, clock=clock)
    host = NoContainerHint("all", after_s=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="provex.agent"):
        for second in range(0, 61):
            clock.now = float(second)
            quiet.poll(0)
            busy.poll(1 if second == 10 else 0)
            host.poll(0)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING", NO_CONTAINER_HINT)]
    assert caplog.records[0].fields == {"waited_s": 30}  # type: ignore[attr-defined]
    assert NO_CONTAINER_HINT == (
        "no container seen yet: provex watches containers only; `--monitor all` to watch the host"
    )
