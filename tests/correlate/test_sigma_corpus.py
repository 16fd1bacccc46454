"""SigmaHQ's Linux rules (tests/fixtures/reference/sigma-linux): every rule whose logsource and
fields provex produces loads and evaluates through the loader `provex run` uses; the others are
skipped and counted by cause. The committed report and the README's figure must stay true."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from exporter.config.schema import CorrelateConfig
from exporter.correlate import build_correlator, survey
from exporter.correlate.engine import Correlator
from exporter.correlate.errors import RulesError
from exporter.model import EventType

from .helpers import FIXTURES, REPO, container, event

CORPUS = REPO / "tests" / "fixtures" / "reference" / "sigma-linux"
REPORT = FIXTURES / "sigmahq-survey.json"
EVALUABLE = 134  # of 214: the figure in the README and in the report


@pytest.fixture(scope="module")
def result():
    return survey([CORPUS])


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole corpus dropped into a user's rules directory, as a user would."""
    target = tmp_path_factory.mktemp("rules") / "sigmahq"
    shutil.copytree(CORPUS / "rules", target / "rules")
    shutil.copytree(CORPUS / "rules-threat-hunting", target / "rules-threat-hunting")
    return target


def test_the_run_loader_refuses_the_rules_it_cannot_run_unless_told_to_skip_them(rules_dir: Path) -> None:
    with pytest.raises(RulesError) as refused:
        build_correlator(CorrelateConfig(rules_dirs=[str(rules_dir)]))
    *skipped, summary = refused.value.errors
    assert len(skipped) == 214 - EVALUABLE
    assert "--skip-unsupported-rules" in str(summary)


def test_the_run_loader_loads_every_evaluable_rule_and_skips_the_rest(rules_dir: Path) -> None:
    default = build_correlator(CorrelateConfig()).ruleset
    ruleset = build_correlator(
        CorrelateConfig(rules_dirs=[str(rules_dir)], skip_unsupported_rules=True)
    ).ruleset
    theirs = [r for r in ruleset.rules if r.file.startswith(str(rules_dir))]
    assert len(theirs) == EVALUABLE
    assert len(ruleset.rules) == len(default.rules) + EVALUABLE
    assert len(ruleset.skipped) == 214 - EVALUABLE
    assert {e.cause.split(":")[0] for e in ruleset.skipped} == {"logsource", "unknown_field"}
    # Tags of a later ATT&CK release than the shipped 18.1 warn; they never refuse a rule.
    assert ruleset.warnings and {w.cause for w in ruleset.warnings} == {"unknown_attack_tag"}
    # Tags are checked against the whole Enterprise list, not the container subset.
    assert any("T1027" in r.techniques for r in theirs)


def test_the_readme_states_the_figure() -> None:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"SigmaHQ's (\d+) Linux rules.*?(\d+) load and evaluate", readme, re.S)
    assert match, "README: the SigmaHQ corpus figure is missing"
    assert (int(match.group(1)), int(match.group(2))) == (214, EVALUABLE)


def test_the_cli_runs_the_corpus(rules_dir: Path, tmp_path: Path) -> None:
    """`provex rules lint --skip-unsupported-rules DIR` accepts the set (without the flag it
    fails, as `run` and `replay` refuse to start); `provex replay --rules-dir DIR
    --skip-unsupported-rules` raises their alerts."""
    from exporter.cli.main import main
    from exporter.model import encode_event

    stream = tmp_path / "events.jsonl"
    c = container("c1")
    decode = event(EventType.EXEC, t=1, path="/usr/bin/base64", argv=["base64", "-d", "/tmp/p"], container=c)
    stream.write_bytes(encode_event(decode) + b"\n")
    out = tmp_path / "out.jsonl"
    assert main(["rules", "lint", str(rules_dir)]) == 1
    assert main(["rules", "lint", "--skip-unsupported-rules", str(rules_dir)]) == 0
    assert main(["replay", "--rules-dir", str(rules_dir), "--output", str(out), str(stream)]) == 2
    replay = ["replay", "--rules-dir", str(rules_dir), "--skip-unsupported-rules", "--output", str(out)]
    assert main([*replay, str(stream)]) == 0
    alerts = [json.loads(line)["alert"] for line in out.read_text().splitlines() if '"alert"' in line]
    assert "Decode Base64 Encoded Text" in {a["rule_title"] for a in alerts}


def test_report_is_current(result):
    assert result.summary() == json.loads(REPORT.read_text())


def test_every_rule_parses_and_only_foreign_logsources_or_fields_are_refused(result):
    summary = result.summary()
    assert summary["loaded"] == summary["rules"] > 200
    assert summary["evaluable"] >= 130
    for cause in summary["by_cause"]:
        kind, _, what = cause.partition(":")
        assert kind in ("logsource", "unknown_field"), cause
        if kind == "logsource":
            # categories provex produces are never refused for their logsource
            assert what not in ("process_creation", "file_event", "file_access", "network_connection")


def test_evaluable_rules_run_on_events_of_every_category(result):
    correlator = Correlator(result.ruleset)
    c = container("c1")
    events = [
        event(EventType.EXEC, t=1, path="/usr/bin/base64", argv=["base64", "-d", "/tmp/p"], container=c),
        event(EventType.EXEC, t=2, path="/usr/bin/id", argv=["id"], container=c),
        event(EventType.OPEN, t=3, path="/etc/sudoers.d/evil", flags=0o101, container=c),
        event(EventType.OPEN, t=4, path="/etc/cron.d/job", flags=0o101, container=c),
        event(
            EventType.CONNECT, t=5, daddr="203.0.113.9", dport=4444, family=2, exe="/bin/bash", container=c
        ),
    ]
    titles = {a.rule_title for e in events for a in correlator.process(e)}
    assert "Decode Base64 Encoded Text" in titles
    assert "Persistence Via Sudoers.d Files" in titles
    assert any("Cron" in t for t in titles)
    assert "Potentially Suspicious Malware Callback Communication - Linux" in titles
    assert "Linux Reverse Shell Indicator" in titles
