"""Live: a container's host mounts reach the host's own files, as on a node.

The held-out lab gives each scenario a hostPath stand-in of its own, which the agent can only
learn through the container's /proc view, so a container that lives milliseconds is gone
before its view is read. On a node the files a hostPath volume reaches are the host's, which
the agent registers by identity from `probes.host_root` when it starts. Here the lab's
stand-ins are the host's files under one host root given to the agent too: a short-lived
container that reads the host's shadow through a name that points elsewhere (renamed, a hard
link made before the agent started, a name longer than the kernel's copy, a dup'd dirfd) is
caught by the identity the kernel reads, and the Pod's own files stay quiet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.helpers.agent import assert_clean_exit
from exporter.config.schema import ProbesConfig
from exporter.scenarios.agent import AgentProcess
from exporter.scenarios.lab import Lab
from exporter.scenarios.library import default_rules, load_library
from exporter.scenarios.session import Session, judge

pytestmark = [pytest.mark.ebpf, pytest.mark.containers, pytest.mark.slow]

HELDOUT2 = Path(__file__).resolve().parents[2] / "bench" / "variants" / "heldout2.yaml"
BY_NAME = {s.name: s for s in load_library([HELDOUT2])}
ATTACKS = [
    "i-hardlink-before-start",
    "i-rename-file-before-read",
    "i-rename-dir-before-read",
    "i-long-path-dots-416",
    "i-fchdir-of-dup",
    "i-dirfd-dup",
    "n-dirfd-dupfd-cloexec",
]
BENIGN = ["b-host-log-through-dirfd", "b-own-long-path", "b-own-copy-rename-read"]
WAIT_S = 10.0


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("host-identity")
    node = tmp / "node"
    for binary in ProbesConfig().runtime_binaries:  # the node's runtime, known by its identity
        if Path(binary).exists():
            (node / binary.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (node / binary.lstrip("/")).symlink_to(binary)
    lab = Lab(tmp / "lab", host_root=node)
    rules = default_rules()
    plan = [(BY_NAME[name], 0) for name in ATTACKS + BENIGN]
    for scenario, trial in plan:
        lab.prepare(scenario, trial)  # the host's files exist before the agent starts, as on a node
    agent = None
    try:
        agent = AgentProcess(
            tmp / "agent", lab.kubeconfig, lab.node_name, extra=["--set", f"probes.host_root={node}"]
        ).start()
        session = Session(lab, agent.feed.alerts, agent.feed.wait, rules, agent.wait_pods)
        runs = {}
        for prepared in session.prepare(plan):
            runs[prepared.scenario.name] = lab.run(prepared)
        session.wait_all(list(runs.values()), WAIT_S)
        assert session.barrier(WAIT_S), "the agent did not catch up"
        yield {
            name: judge(run, agent.feed.alerts(), rules, late_ms=WAIT_S * 1000) for name, run in runs.items()
        }
        assert_clean_exit(agent.stop(), agent.stderr_path)
    finally:
        if agent is not None and agent.alive():
            agent.stop()
        lab.close()


@pytest.mark.parametrize("name", ATTACKS)
def test_a_short_lived_container_reading_the_hosts_file_by_another_name_is_caught(outcomes, name):
    outcome = outcomes[name]
    assert outcome.run.returncode == 0, outcome.run.stderr[-400:]
    assert outcome.status == "fired", [(a.rule_title, a.pod_name) for a in outcome.alerts]


@pytest.mark.parametrize("name", BENIGN)
def test_its_benign_twin_stays_quiet(outcomes, name):
    outcome = outcomes[name]
    assert outcome.run.returncode == 0, outcome.run.stderr[-400:]
    assert outcome.status == "clean", [(a.rule_title, a.pod_name) for a in outcome.alerts]
