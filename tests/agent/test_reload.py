"""Rule reload: the new set is compiled and tested beside the running one and swapped into
the running correlator (its provenance graph stays); a bad set is refused with its errors
and the running one keeps running; a ConfigMap's `..data` swap is seen; the loaded set's
digest is on /metrics and in every alert."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

import pytest

from exporter.agent.reload import RuleReloader
from exporter.config.schema import CorrelateConfig
from exporter.correlate.engine import Correlator, build_correlator, configured_rules
from exporter.correlate.loader import DEFAULT_RULES_DIR, RuleSet, load_rules
from exporter.metrics import REGISTRY
from exporter.source.replay import ReplaySource
from tests.correlate.helpers import RULE_FIXTURES, SIMPLE

CHAIN = "Service-Account Token Read Then Used Against The API Server"
RELATIVE_READ = RULE_FIXTURES / "sa_token_exfiltration" / "positive" / "relative_read_after_cd.jsonl"
MINE = SIMPLE.lstrip()  # a rule on /etc/shadow, name `simple`
BROKEN = (
    "title: Broken\nlogsource:\n  product: linux\n  category: file_access\ndetection:\n  condition: nope\n"
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rules_info() -> list[dict[str, str]]:
    return [
        s.labels
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == "provex_rules_info" and s.value == 1
    ]


def settle(reloader: RuleReloader) -> None:
    """The loop's two turns around a build: start it, then (once done) swap it in."""
    reloader.tick()
    reloader.wait()
    reloader.tick()


def test_a_swapped_rule_set_keeps_the_provenance_graph() -> None:
    """The chain's read is `cat token` after `cd .../serviceaccount`: only a correlator that
    kept the chdir seen before the reload resolves it to the token."""
    events = list(ReplaySource(RELATIVE_READ))
    split = next(n for n, e in enumerate(events) if e.type.value == "open")  # after the cd
    config = CorrelateConfig(disabled_rules=["sa_token_exfiltration"])
    running = Correlator(configured_rules(config), config)
    for event in events[:split]:
        assert running.process(event) == []
    full = load_rules([DEFAULT_RULES_DIR])
    running.use_rules(full)
    alerts = [a for e in events[split:] for a in running.process(e)]
    assert [a.rule_title for a in alerts] == [CHAIN]
    assert alerts[0].rules_digest == full.digest != configured_rules(config).digest
    # A correlator built afresh at the same point (what a restart does) has lost the cd.
    fresh = Correlator(full)
    assert [a for e in events[split:] for a in fresh.process(e)] == []


def _alerting(ruleset: RuleSet) -> int:
    return sum(1 for r in ruleset.rules if r.generate) + len(ruleset.correlations)


def test_sighup_reloads_a_changed_rules_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mine = tmp_path / "rules"
    mine.mkdir()
    config = CorrelateConfig(rules_dirs=[str(mine)])
    correlator = build_correlator(config)
    requested = threading.Event()
    reloader = RuleReloader(config, correlator, requested, clock=Clock())
    before = correlator.ruleset.digest
    defaults = str(_alerting(correlator.ruleset))  # the default rules that alert
    assert {"digest": before, "rules": defaults} in rules_info()
    (mine / "shadow.yml").write_text(MINE)
    requested.set()  # what the SIGHUP handler does, and all it does
    with caplog.at_level(logging.INFO, logger="provex.agent"):
        settle(reloader)
    assert not requested.is_set()
    (record,) = [r for r in caplog.records if r.getMessage() == "rules reloaded"]
    assert record.fields["added"] == ["simple"] and record.fields["reason"] == "SIGHUP"  # type: ignore[attr-defined]
    after = correlator.ruleset.digest
    assert after != before and rules_info() == [{"digest": after, "rules": str(int(defaults) + 1)}]


def test_a_bad_set_is_refused_with_its_errors_and_the_old_one_keeps_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mine = tmp_path / "rules"
    mine.mkdir()
    (mine / "shadow.yml").write_text(MINE)
    config = CorrelateConfig(rules_dirs=[str(mine)])
    correlator = build_correlator(config)
    running: RuleSet = correlator.ruleset
    requested = threading.Event()
    reloader = RuleReloader(config, correlator, requested, clock=Clock())
    (mine / "broken.yml").write_text(BROKEN)
    requested.set()
    with caplog.at_level(logging.INFO, logger="provex.agent"):
        settle(reloader)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "rule reload refused: the running rules keep running"
    errors = record.fields["errors"]  # type: ignore[attr-defined]
    assert errors and all(e.startswith(f"{mine / 'broken.yml'}:") for e in errors), errors
    assert correlator.ruleset is running  # untouched
    assert rules_info() == [{"digest": running.digest, "rules": str(_alerting(running))}]


def test_a_set_whose_fixtures_fail_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mine = tmp_path / "rules"
    (mine / "fixtures" / "shadow" / "positive").mkdir(parents=True)
    config = CorrelateConfig(rules_dirs=[str(mine)])
    correlator = build_correlator(config)
    reloader = RuleReloader(config, correlator, threading.Event(), clock=Clock())
    (mine / "shadow.yml").write_text(MINE)
    # A positive fixture that reads /etc/passwd: the new rule stays silent on it.
    shutil.copy(RULE_FIXTURES / "sa_token_exfiltration" / "positive" / "read_then_connect.jsonl",
                mine / "fixtures" / "shadow" / "positive" / "not-shadow.jsonl")  # fmt: skip
    reloader.requested.set()
    with caplog.at_level(logging.INFO, logger="provex.agent"):
        settle(reloader)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    (error,) = record.fields["errors"]  # type: ignore[attr-defined]
    assert error == "fixture failed: FAIL shadow.yml positive/not-shadow.jsonl: no alert"
    assert [r.name for r in correlator.ruleset.rules if r.name == "simple"] == []


def configmap_volume(root: Path, files: dict[str, str], stamp: str) -> None:
    """What the kubelet makes of a ConfigMap volume: the files in a timestamped directory,
    `..data` linking to it, and each name a link through `..data`; an update writes a new
    directory and swaps `..data` atomically (rename over the old link)."""
    data = root / f"..{stamp}"
    data.mkdir()
    for name, text in files.items():
        (data / name).write_text(text)
    link = root / "..data_tmp"
    link.symlink_to(data.name)
    os.replace(link, root / "..data")
    for name in files:
        if not (root / name).is_symlink():
            (root / name).symlink_to(f"..data/{name}")


def test_a_configmap_swap_is_loaded_once_and_reloaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volume = tmp_path / "rules"
    volume.mkdir()
    configmap_volume(volume, {"shadow.yml": MINE}, "2026_12_01_10_00_00.1")
    config = CorrelateConfig(rules_dirs=[str(volume)])
    correlator = build_correlator(config)  # each rule once, not also from ..2026_.../
    assert [r.name for r in correlator.ruleset.rules if r.file.startswith(str(volume))] == ["simple"]
    clock = Clock()
    reloader = RuleReloader(config, correlator, threading.Event(), poll_s=2.0, clock=clock)
    changed = MINE.replace("level: high", "level: critical")
    configmap_volume(volume, {"shadow.yml": changed}, "2026_12_01_10_05_00.2")
    with caplog.at_level(logging.INFO, logger="provex.agent"):
        clock.now = 2.0
        reloader.tick()  # the change is seen...
        assert reloader._worker is None
        clock.now = 4.0
        settle(reloader)  # ...and acted on once it has held for a poll
    # (only the reloader's: a background thread of another test may log meanwhile)
    assert [r.getMessage() for r in caplog.records if r.name == "provex.agent"] == ["rules reloaded"]
    (mine,) = [r for r in correlator.ruleset.rules if r.name == "simple"]
    assert mine.level == "critical"
