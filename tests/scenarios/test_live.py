"""Live: every scenario of the library in a real runc container, watched by the real agent.

One agent and one lab for the module: every scenario's Pod is registered with
the stand-in API server, every scenario runs once, then a sentinel attack
proves the agent has caught up; each test then judges one scenario. Attacks
must raise their rule's alert with the right technique and the right Pod;
benign workloads must raise nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bench.helpers.agent import assert_clean_exit
from exporter.scenarios.agent import AgentProcess
from exporter.scenarios.lab import Lab, TrialRun
from exporter.scenarios.library import RuleRef, Scenario, default_rules, load_library
from exporter.scenarios.session import Outcome, Session, judge

pytestmark = [pytest.mark.ebpf, pytest.mark.containers, pytest.mark.slow]

LIBRARY = load_library()
ATTACKS = [s for s in LIBRARY if s.kind == "attack"]
BENIGN = [s for s in LIBRARY if s.kind == "benign"]
# Live alerts arrive in milliseconds; this bound only keeps a failing test from hanging.
WAIT_S = 10.0


@dataclass
class World:
    lab: Lab
    agent: AgentProcess
    session: Session
    rules: dict[str, RuleRef]
    runs: dict[str, TrialRun]
    caught_up: bool

    def outcome(self, scenario: Scenario) -> Outcome:
        return judge(self.runs[scenario.name], self.agent.feed.alerts(), self.rules, late_ms=WAIT_S * 1000)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scenarios")
    lab = Lab(tmp / "lab")
    agent = None
    try:
        agent = AgentProcess(tmp / "agent", lab.kubeconfig, lab.node_name).start()
        rules = default_rules()
        session = Session(lab, agent.feed.alerts, agent.feed.wait, rules, agent.wait_pods)
        runs = {}
        for prepared in session.prepare([(s, 0) for s in LIBRARY]):
            run = runs[prepared.scenario.name] = lab.run(prepared)
            session.wait_for(run, WAIT_S)
        caught_up = session.barrier(WAIT_S)
        yield World(lab, agent, session, rules, runs, caught_up)
        assert_clean_exit(agent.stop(), agent.stderr_path)
    finally:
        if agent is not None and agent.alive():
            agent.stop()
        lab.close()


def _details(outcome: Outcome) -> str:
    run = outcome.run
    alerts = [(a.rule_title, a.pod_name) for a in outcome.alerts]
    return f"status={outcome.status} rc={run.returncode} alerts={alerts}\nstdout={run.stdout[-400:]}\nstderr={run.stderr[-400:]}"


@pytest.mark.parametrize("scenario", ATTACKS, ids=lambda s: s.name)
def test_attack_raises_its_alert(world, scenario):
    outcome = world.outcome(scenario)
    assert outcome.run.ok, _details(outcome)
    assert outcome.detected, _details(outcome)
    alert = outcome.expected
    assert alert is not None
    assert any(t == scenario.technique or t.startswith(scenario.technique + ".") for t in alert.techniques)
    # The enrichment resolved the trial's Pod from the stand-in API server.
    assert (alert.pod_name, alert.pod_namespace) == (outcome.run.prepared.pod_name, scenario.namespace)
    assert alert.alert is not None and alert.alert.event is not None and not alert.alert.event.late
    assert not outcome.wrong_alerts(), _details(outcome)


@pytest.mark.parametrize("scenario", BENIGN, ids=lambda s: s.name)
def test_benign_raises_nothing(world, scenario):
    assert world.caught_up, "the sentinel's alert never came: absence proves nothing"
    outcome = world.outcome(scenario)
    assert outcome.run.ok, _details(outcome)
    assert outcome.status == "clean", _details(outcome)


def test_token_chain_connects_to_the_apiserver_the_kubeconfig_names(world):
    (scenario,) = [s for s in ATTACKS if s.name == "cat-then-wget"]
    outcome = world.outcome(scenario)
    assert outcome.expected is not None and outcome.expected.alert is not None
    decisive = outcome.expected.alert.event
    assert decisive is not None and decisive.type.value == "connect"
    assert (decisive.daddr, decisive.dport) == ("127.0.0.1", world.lab.api.port)
    assert decisive.dest_is_apiserver


def test_host_mounts_come_from_the_pod_spec(world):
    (scenario,) = [s for s in ATTACKS if s.name == "shadow-cat"]
    alert = world.outcome(scenario).expected
    assert alert is not None and alert.alert is not None and alert.alert.event is not None
    container = alert.alert.event.container
    assert container is not None
    # The container sees a temp dir; the Pod declares the node's /etc: enrichment reports the latter.
    assert [(m.host_path, m.container_path) for m in container.host_mounts] == [("/etc", "/host/etc")]


def test_no_kernel_loss_during_the_library(world):
    lost = {k: v for k, v in world.agent.kernel_counters().items() if k[1].startswith("lost") and v}
    assert not lost, lost
