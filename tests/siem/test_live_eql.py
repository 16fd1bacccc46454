"""The exported EQL token-exfiltration sequences, run with the `eql` engine over ECS
documents of a live run: the real agent, real runc containers, a loopback
listener the agent knows as the API server (no kubeconfig). The shipped rule's
kin join is one sequence per pair of the lineage slots the documents carry."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from bench.helpers.agent import Agent, assert_clean_exit
from exporter.config.schema import CorrelateConfig
from exporter.correlate import build_correlator
from exporter.mapping import Mapper
from exporter.model import Event, EventType
from exporter.scenarios.runc import ContainerSpec, Runc
from exporter.siem.export import export
from tests.siem import eqlrun

pytestmark = [pytest.mark.ebpf, pytest.mark.containers, pytest.mark.slow]

TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@pytest.fixture
def apiserver() -> Iterator[int]:
    """A loopback listener standing in for the API server: accepts and closes."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@pytest.fixture
def runc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runc]:
    runtime = Runc(tmp_path_factory.mktemp("runc"))
    yield runtime
    runtime.close()


def test_exported_eql_sequence_matches_the_attack_and_not_the_benign_pods(tmp_path, runc, apiserver) -> None:
    (chain,) = [r for r in export("elasticsearch-eql") if r.name == "sa_token_exfiltration"]
    assert chain.query is not None and len(chain.queries) == 7
    env_kubeconfig = os.environ.pop("KUBECONFIG", None)  # kubeconfig-less: container-only enrichment
    try:
        agent = Agent(tmp_path, "--set", f"enrich.apiserver_addresses=['127.0.0.1:{apiserver}']")
    finally:
        if env_kubeconfig is not None:
            os.environ["KUBECONFIG"] = env_kubeconfig
    read = f"sysprobe open {TOKEN}"
    connect = f"sysprobe connect 127.0.0.1 {apiserver}"
    try:
        runs = {
            # `sleep 1` first: enrichment learns a new cgroup in the background, and
            # a container that is gone within milliseconds would only get late events.
            name: runc.run(
                ContainerSpec(
                    ["/bin/sh", "-c", f"sleep 1 ; {script}"], name=name, files={TOKEN: "not-a-real-token\n"}
                )
            )
            for name, script in [
                ("attacker", f"{read} ; {connect}"),
                ("reader", read),
                ("connector", connect),
            ]
        }
        for name, run in runs.items():
            assert run.returncode == 0, (name, run.stderr)
        cgroups = {run.cgroup_id: name for name, run in runs.items()}

        def complete(events: list[Event]) -> bool:
            seen = {(e.cgroup_id, e.type) for e in events if e.comm == "sysprobe"}
            return {(runs[n].cgroup_id, EventType.CONNECT) for n in ("attacker", "connector")} <= seen and {
                (runs[n].cgroup_id, EventType.OPEN) for n in ("attacker", "reader")
            } <= seen

        events = agent.wait_for(complete)
    finally:
        assert_clean_exit(agent.stop(), agent.stderr_path)
    mine = [e for e in events if e.cgroup_id in cgroups]
    assert complete(mine), "the agent did not record every step"

    # ECS documents, exactly as the agent maps them (what the bodymap exporter indexes).
    mapper = Mapper("ecs", node_name="node-1")
    docs = [d.body for d in (mapper.map(e) for e in mine) if d is not None]
    names = {e.container.id: cgroups[e.cgroup_id] for e in mine if e.container is not None}
    assert set(names.values()) == {"attacker", "reader", "connector"}

    matches = [m for query in chain.queries for m in eqlrun.run(query, docs)]
    report = [
        [
            (
                names[d["container"]["id"]],
                d["event"]["action"],
                d.get("file", {}).get("path") or d["destination"]["address"],
            )
            for d in m
        ]
        for m in matches
    ]
    print("EQL:\n" + chain.query + "\nmatched: " + json.dumps(report))
    assert matches, "the sequence matched nothing"
    assert {names[m[0]["container"]["id"]] for m in matches} == {"attacker"}
    for m in matches:
        assert [d["event"]["category"] for d in m] == [["file"], ["network"]]
        assert m[0]["file"]["path"] == TOKEN
        assert m[1]["labels"]["provex_destination"] == "kubernetes-apiserver"

    # provex's own engine, over the same events, agrees.
    correlator = build_correlator(CorrelateConfig())
    alerts = [a for e in mine for a in correlator.process(e)] + correlator.drain()
    chain_alerts = [a for a in alerts if a.rule_id == chain.uid]
    assert {cgroups[a.event.cgroup_id] for a in chain_alerts if a.event is not None} == {"attacker"}
