"""The exported EQL chains, run with the `eql` engine over the ECS documents of the rule
fixtures (correlated by the real agent first, as documents are), raise exactly the chains
the agent raises: the cross-node chains on every fixture, the kin join where the events
carry their recorded lineage (older recordings fall back to the graph's, which documents
do not carry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.helpers.records import AGENT
from exporter.correlate import DEFAULT_RULES_DIR, load_rules
from exporter.correlate.engine import Correlator
from exporter.mapping import Mapper
from exporter.model import decode_event
from exporter.siem.export import export
from tests.siem import eqlrun

FIXTURES = Path(DEFAULT_RULES_DIR) / "fixtures"
RULESET = load_rules([DEFAULT_RULES_DIR])
CHAINS = {r.name: r for r in export("elasticsearch-eql") if r.name in {c.name for c in RULESET.correlations}}
CASES = sorted(FIXTURES.glob("lateral_movement/*/*.jsonl")) + sorted(
    FIXTURES.glob("sa_token_exfiltration/*/*recorded_lineage.jsonl")
)


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.stem}")
def test_the_siem_raises_the_chains_the_agent_raises(case: Path) -> None:
    events = [decode_event(line) for line in case.read_bytes().splitlines() if line.strip()]
    correlator = Correlator(RULESET)
    alerts = [a for e in events for a in correlator.process(e)] + correlator.drain()
    names = {c.uid: c.name for c in RULESET.correlations}
    by_agent = {names[a.rule_id] for a in alerts if a.rule_id in names}
    mapper = Mapper("ecs", **AGENT)
    docs = [d.body for d in (mapper.map(e) for e in events) if d is not None]
    by_siem = {name for name, chain in CHAINS.items() if any(eqlrun.run(q, docs) for q in chain.queries)}
    if not all(e.process is not None and e.process.lineage for e in events):
        kin = {c.name for c in RULESET.correlations if c.lineage_mode}  # judged by the graph here
        by_agent, by_siem = by_agent - kin, by_siem - kin
    assert by_siem == by_agent
    assert bool(by_agent) == (case.parent.name == "positive")
