"""`provex verify` proves a user's rule (no canary scenario of its own) by its positive
fixtures, replayed through the rules the agent loads with the same config."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from exporter.scenarios.library import ScenarioError
from exporter.scenarios.verify import render, run_verify
from tests.correlate.helpers import RULE_FIXTURES

TOKEN_RULE = """\
title: Service-Account Token Read In A Container
id: 3b0c2f4e-8a61-4d7e-9f27-5c1e2a9d7b10
name: token_read_in_container
logsource:
  product: linux
  category: file_access
detection:
  selection:
    TargetFilename|endswith: /serviceaccount/token
  condition: selection
level: low
"""


def args(rules_dir: Path, *rules: str, overrides: tuple[str, ...] = ()) -> argparse.Namespace:
    return argparse.Namespace(
        config=None,
        overrides=list(overrides),
        rules_dir=[str(rules_dir)],
        rule=list(rules),
        late_ms=1000.0,
        timeout=10.0,
        json=False,
        workdir=None,
    )


@pytest.fixture
def my_rules(tmp_path: Path) -> Path:
    folder = tmp_path / "my-rules"
    folder.mkdir()
    (folder / "token_read_in_container.yml").write_text(TOKEN_RULE)
    return folder


def test_a_user_rule_fires_from_its_positive_fixture(my_rules: Path) -> None:
    positive = my_rules / "fixtures" / "token_read_in_container" / "positive"
    positive.mkdir(parents=True)
    shutil.copy(RULE_FIXTURES / "sa_token_exfiltration" / "positive" / "read_then_connect.jsonl", positive)
    (result,) = run_verify(args(my_rules, "token_read_in_container"))
    assert (result.rule, result.canary, result.status) == (
        "token_read_in_container",
        "fixture read_then_connect.jsonl",
        "fired",
    )


def test_a_user_rule_whose_fixture_does_not_alert_did_not_fire(my_rules: Path) -> None:
    positive = my_rules / "fixtures" / "token_read_in_container" / "positive"
    positive.mkdir(parents=True)
    (mount,) = sorted((RULE_FIXTURES / "container_mount" / "positive").glob("*.jsonl"))[:1]
    shutil.copy(mount, positive)  # a mount, no token read
    (result,) = run_verify(args(my_rules, "token_read_in_container"))
    assert result.status == "missed" and not result.ok
    assert "no alert from 1 positive fixture(s)" in result.detail


def test_a_disabled_user_rule_does_not_fire(my_rules: Path) -> None:
    positive = my_rules / "fixtures" / "token_read_in_container" / "positive"
    positive.mkdir(parents=True)
    shutil.copy(RULE_FIXTURES / "sa_token_exfiltration" / "positive" / "read_then_connect.jsonl", positive)
    off = ("correlate.disabled_rules=[token_read_in_container]",)
    (result,) = run_verify(args(my_rules, "token_read_in_container", overrides=off))
    assert result.status == "missed"


def test_a_user_rule_without_fixtures_is_untested_and_fails(my_rules: Path) -> None:
    (result,) = run_verify(args(my_rules, "token_read_in_container"))
    assert result.status == "untested" and not result.ok
    table = render([result])
    assert "no canary: give it positive fixtures" in table and "0/1 rules fired in time" in table


def test_every_rule_the_agent_loads_has_a_canary_or_is_listed(my_rules: Path) -> None:
    with pytest.raises(ScenarioError, match="no canary for nonexistent_rule"):
        run_verify(args(my_rules, "nonexistent_rule"))
    # The default rules' canaries are scenarios; the user's rule is known to --rule as well.
    with pytest.raises(ScenarioError) as refused:
        run_verify(args(my_rules, "nope"))
    assert "token_read_in_container" in str(refused.value) and "container_setns" in str(refused.value)


def test_a_bad_rule_set_is_refused_before_anything_runs(my_rules: Path) -> None:
    (my_rules / "broken.yml").write_text("title: Broken\nlogsource: {product: linux}\ndetection: {}\n")
    with pytest.raises(ScenarioError, match=r"broken\.yml"):
        run_verify(args(my_rules, "token_read_in_container"))
