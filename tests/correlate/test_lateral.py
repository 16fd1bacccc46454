"""The cross-node chains (lateral_movement.yml), where both halves run on one node: which
chain each positive fixture raises, and what its alert rests on."""

from __future__ import annotations

import pytest

from exporter.agent.fixtures import replay
from exporter.correlate import DEFAULT_RULES_DIR, load_rules

from .helpers import RULE_FIXTURES

RULESET = load_rules([DEFAULT_RULES_DIR])
POSITIVE = RULE_FIXTURES / "lateral_movement" / "positive"


@pytest.mark.parametrize(
    ("case", "rule"),
    [
        ("token_use_after_inbound", "lateral_token_use"),
        ("token_use_over_ipv6", "lateral_token_use"),
        ("accepted_payload_run", "lateral_tool_transfer"),
        ("server_spawns_shell_then_connects_on", "lateral_relay"),
    ],
)
def test_each_positive_raises_its_chain(case: str, rule: str) -> None:
    alerts, _ = replay(RULESET, POSITIVE / f"{case}.jsonl")
    names = {c.uid: c.name for c in RULESET.correlations}
    lateral = {names[a.rule_id] for a in alerts if names.get(a.rule_id, "").startswith("lateral_")}
    assert lateral == {rule}


def test_the_token_chain_rests_on_both_halves() -> None:
    alerts, _ = replay(RULESET, POSITIVE / "token_use_after_inbound.jsonl")
    (alert,) = [a for a in alerts if a.rule_title == "Lateral Movement Then Service-Account Token Use"]
    assert alert.key == {"TargetPod": "10.244.2.9"}
    steps = [(e.step, e.type, e.destination or e.peer or e.path) for e in alert.evidence]
    assert steps == [
        ("lateral_connect", "connect", "10.244.2.9:8080"),
        ("lateral_accept", "accept", "10.244.1.5:40000"),
        ("lateral_token_read", "open", "/var/run/secrets/kubernetes.io/serviceaccount/token"),
        ("lateral_apiserver_connect", "connect", "10.96.0.1:443"),
    ]
    assert alert.techniques == ["T1210", "T1528", "T1552.007"]


def test_what_an_accepted_connection_carried_is_from_the_network() -> None:
    """The accept taints the process like a connect: the file nc wrote is a download."""
    alerts, _ = replay(RULESET, POSITIVE / "accepted_payload_run.jsonl")
    (download,) = [a for a in alerts if a.rule_title == "Downloaded File Executed"]
    assert [(e.step, e.type) for e in download.evidence][:2] == [("accept", "accept"), ("write", "open")]
    assert download.evidence[0].peer == "10.244.1.5:40002"
