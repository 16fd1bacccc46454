"""A chain that crosses nodes, joined in the SIEM: two agents on one machine, each a "node".

Each agent monitors only its node's containers (probes.cgroup_subtree: the Pods of node-a
and node-b run under cgroup subtrees of their own) and watches only its node's Pods in the
API-server stand-in. The Pods run in two network namespaces this test makes, joined by a
veth pair, on test-only addresses that exist only inside them. Both agents ship ECS
documents over OTLP to one receiver (one index, as the gateway collector makes it).

The attack: frontend (node-a, 10.250.0.1) connects to relay (node-b, 10.250.0.2), which
accepts, reads its service-account token and calls the API server (10.250.0.9, inside
node-b's namespace). Its benign twin: frontend-2 (10.250.0.5) calls relay-2's service
(10.250.0.6), which touches neither. Neither agent raises the chain alone; the exported
EQL, run with the `eql` engine over the merged documents, matches the attack exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.helpers.agent import Agent
from bench.helpers.otlp_receiver import OtlpReceiver
from exporter.probes.cgroups import find_cgroup2_mount
from exporter.scenarios.apiserver import FakeApiServer, make_pod
from exporter.scenarios.runc import ContainerSpec, Runc
from exporter.siem.export import export
from tests.siem import eqlrun

pytestmark = [pytest.mark.ebpf, pytest.mark.containers, pytest.mark.slow]

TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
A_IP, B_IP, A2_IP, B2_IP, API_IP = "10.250.0.1", "10.250.0.2", "10.250.0.5", "10.250.0.6", "10.250.0.9"
API_PORT = 6443
LISTENER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    conn.close()
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def network() -> Iterator[dict[str, str]]:
    """Two network namespaces joined by a veth pair; each side has two /30 addresses (one per
    Pod of that node: the kernel picks the source address of the same subnet), and node-b a
    /32 on its loopback for the API server stand-in. Nothing is addressed outside them."""
    tag = f"{os.getpid() % 100000}"
    names = {"node-a": f"provex-a-{tag}", "node-b": f"provex-b-{tag}"}
    ends = {"node-a": f"pxa{tag}", "node-b": f"pxb{tag}"}
    for ns in names.values():
        _ip("netns", "add", ns)
    try:
        _ip("link", "add", ends["node-a"], "type", "veth", "peer", "name", ends["node-b"])
        for node, addresses in (("node-a", (A_IP, A2_IP)), ("node-b", (B_IP, B2_IP))):
            ns, dev = names[node], ends[node]
            _ip("link", "set", dev, "netns", ns)
            for address in addresses:
                _ip("-n", ns, "addr", "add", f"{address}/30", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", names["node-b"], "addr", "add", f"{API_IP}/32", "dev", "lo")
        yield {node: f"/run/netns/{ns}" for node, ns in names.items()} | {"api-ns": names["node-b"]}
    finally:
        for ns in names.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture
def apiserver_listener(network: dict[str, str]) -> Iterator[None]:
    """What node-b's Pods reach as the API server: a listener inside node-b's namespace."""
    process = subprocess.Popen(
        ["ip", "netns", "exec", network["api-ns"], sys.executable, "-c", LISTENER, API_IP, str(API_PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def cgroup_root() -> Iterator[str]:
    """The two nodes' cgroup subtrees, made before the agents start (they find kubepods there)."""
    root = f"provex-xnode-{os.getpid() % 100000}"
    mount = find_cgroup2_mount()
    for node in ("node-a", "node-b"):
        (mount / root / node / "kubepods" / "besteffort").mkdir(parents=True, exist_ok=True)
    yield root
    for path in sorted((p for p in (mount / root).rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        path.rmdir()
    (mount / root).rmdir()


@pytest.fixture
def runc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runc]:
    runtime = Runc(tmp_path_factory.mktemp("runc"))
    yield runtime
    runtime.close()


class Pod:
    def __init__(self, name: str, node: str, ip: str, script: str) -> None:
        self.name, self.node, self.ip, self.script = name, node, ip, script
        self.uid = str(uuid.uuid4())
        self.cid = uuid.uuid4().hex + uuid.uuid4().hex

    def register(self, api: FakeApiServer) -> None:
        containers = [(self.name, "busybox:1.36", f"containerd://{self.cid}")]
        api.add_pod(make_pod(self.name, self.uid, node=self.node, containers=containers, pod_ips=[self.ip]))

    def spec(self, network: dict[str, str], cgroup_root: str) -> ContainerSpec:
        return ContainerSpec(
            ["/bin/sh", "-c", self.script],
            name=self.name,
            pod_uid=self.uid,
            container_id=self.cid,
            netns=network[self.node],
            cgroup_parent=f"{cgroup_root}/{self.node}",
            files={TOKEN: "not-a-real-token\n"},
        )


def _connect_until_accepted(ip: str, port: int) -> str:
    # `sleep 1` first: enrichment learns a new cgroup in the background.
    return (
        f"sleep 1 ; i=0 ; while [ $i -lt 100 ] ; do sysprobe connect {ip} {port} && break ;"
        " i=$((i+1)) ; sleep 0.1 ; done"
    )


def _get(doc: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None  # type: ignore[assignment]
    return doc


def test_a_chain_across_two_nodes_is_joined_by_the_exported_eql(
    tmp_path: Path, network: dict[str, str], apiserver_listener: None, cgroup_root: str, runc: Runc
) -> None:
    pods = {
        "relay": Pod(
            "relay",
            "node-b",
            B_IP,
            f"sysprobe accept 8080 ; sysprobe open {TOKEN} ; sysprobe connect {API_IP} {API_PORT}",
        ),
        "relay-2": Pod("relay-2", "node-b", B2_IP, "sysprobe accept 8081"),
        "frontend": Pod("frontend", "node-a", A_IP, _connect_until_accepted(B_IP, 8080)),
        "frontend-2": Pod("frontend-2", "node-a", A2_IP, _connect_until_accepted(B2_IP, 8081)),
    }
    api = FakeApiServer().start()
    receiver = OtlpReceiver("grpc").start()
    agents: dict[str, Agent] = {}
    try:
        for pod in pods.values():
            pod.register(api)
        kubeconfig = api.write_kubeconfig(str(tmp_path / "kubeconfig"))
        for node in ("node-a", "node-b"):
            (tmp_path / node).mkdir()
            agents[node] = Agent(
                tmp_path / node,
                *("--otlp-endpoint", receiver.endpoint),
                *("--set", f"enrich.node_name={node}", "--set", f"enrich.kubeconfig={kubeconfig}"),
                *("--set", f"probes.cgroup_subtree=/{cgroup_root}/{node}"),
                *("--set", f"enrich.apiserver_addresses=['{API_IP}:{API_PORT}']"),
                command="run",
            )
        servers = [runc.start(pods[name].spec(network, cgroup_root)) for name in ("relay", "relay-2")]
        for name in ("frontend", "frontend-2"):
            run = runc.run(pods[name].spec(network, cgroup_root))
            assert run.returncode == 0, (name, run.stdout, run.stderr)
        for server in servers:
            server.process.wait(timeout=20)
            done = server.stop()
            assert done.returncode == 0, (server.spec.name, done.stdout, done.stderr)

        by_cid = {pod.cid: pod for pod in pods.values()}

        def docs() -> list[dict[str, Any]]:
            return [r.body for r in receiver.records() if isinstance(r.body, dict)]

        def seen(body: dict[str, Any], pod: str, action: str) -> bool:
            return (
                _get(body, "container.id") == pods[pod].cid
                and _get(body, "event.action") == action
                and _get(body, "event.outcome") in ("success", "unknown")
            )

        wanted = [
            ("frontend", "connect"),
            ("frontend-2", "connect"),
            ("relay", "accept"),
            ("relay-2", "accept"),
            ("relay", "open"),
        ]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = docs()
            if all(any(seen(d, p, a) for d in got) for p, a in wanted) and any(
                _get(d, "labels.provex_destination") == "kubernetes-apiserver" for d in got
            ):
                break
            time.sleep(0.1)
    finally:
        for agent in agents.values():
            assert agent.stop() == 0
        receiver.stop()
        api.stop()

    merged = docs()
    mine = [d for d in merged if _get(d, "container.id") in by_cid]
    # Each agent saw its own node's containers only, and says which node it is.
    for d in merged:
        cid = _get(d, "container.id")
        assert cid in by_cid, f"an agent reported a container outside its subtree: {cid}"
        assert _get(d, "host.name") == by_cid[cid].node
    assert {by_cid[_get(d, "container.id")].name for d in mine} == set(pods)

    # The join keys: the connect names the destination Pod's address, the accept its peer and
    # its own, and every document of a Pod its address.
    (connect,) = [d for d in mine if seen(d, "frontend", "connect")]
    assert (_get(connect, "source.ip"), _get(connect, "destination.ip")) == (A_IP, B_IP)
    (accept,) = [d for d in mine if seen(d, "relay", "accept")]
    assert _get(accept, "network.direction") == "ingress"
    assert (_get(accept, "source.ip"), _get(accept, "destination.ip")) == (A_IP, B_IP)
    assert all(
        _get(d, "provex.pod_ip") == by_cid[_get(d, "container.id")].ip
        for d in mine
        if _get(d, "orchestrator.resource.id")
    )

    # Neither agent raised the chain alone (node-b raised its own half: the token chain).
    alerts = [d for d in merged if _get(d, "event.kind") == "alert"]
    chains = {r.name: r for r in export("elasticsearch-eql") if r.name.startswith("lateral_")}
    lateral_ids = {r.uid for r in chains.values()}
    assert not [a for a in alerts if _get(a, "rule.id") in lateral_ids]
    token_chain = {r.uid for r in export("elasticsearch-eql") if r.name == "sa_token_exfiltration"}
    assert {
        (_get(a, "host.name"), _get(a, "container.id")) for a in alerts if _get(a, "rule.id") in token_chain
    } == {("node-b", pods["relay"].cid)}

    # The SIEM's join, over both nodes' documents: exactly the attack, never the twin.
    events = [d for d in merged if _get(d, "event.kind") == "event"]
    matches = {
        name: [m for q in chain.queries for m in eqlrun.run(q, events)] for name, chain in chains.items()
    }
    assert not matches["lateral_tool_transfer"] and not matches["lateral_relay"]
    (match,) = matches["lateral_token_use"]
    steps = [
        (_get(d, "host.name"), by_cid[_get(d, "container.id")].name, _get(d, "event.action")) for d in match
    ]
    assert steps == [
        ("node-a", "frontend", "connect"),
        ("node-b", "relay", "accept"),
        ("node-b", "relay", "open"),
        ("node-b", "relay", "connect"),
    ]
    assert _get(match[0], "event.id") == _get(connect, "event.id")
    assert _get(match[2], "file.path") == TOKEN
    assert _get(match[3], "labels.provex_destination") == "kubernetes-apiserver"
    twins = {pods["frontend-2"].cid, pods["relay-2"].cid}
    assert not [d for ms in matches.values() for m in ms for d in m if _get(d, "container.id") in twins]
