"""The provenance graph: what it records, and that it stays bounded in event time and size."""

from __future__ import annotations

import pytest

from exporter.correlate.graph import ProvenanceGraph
from exporter.metrics import render
from exporter.model import EventType

from .helpers import container, event


def _kinds(graph: ProvenanceGraph) -> set[str]:
    return {d["kind"] for _, _, d in graph.g.edges(data=True)}


def test_edges_for_every_event_kind():
    g = ProvenanceGraph(600, 1000, 1000)
    c = container("c1")
    g.add(event(EventType.FORK, t=1, pid=10, child_pid=11, container=c))
    g.add(event(EventType.EXEC, t=2, pid=11, ppid=10, path="/bin/x", container=c))
    g.add(event(EventType.OPEN, t=3, pid=11, ppid=10, path="/etc/x", flags=0o101, container=c))
    g.add(event(EventType.CONNECT, t=4, pid=11, ppid=10, daddr="10.0.0.1", dport=80, container=c))
    g.add(event(EventType.SETNS, t=5, pid=11, ppid=10, fd=3, nstype=0x20000, container=c))
    g.add(event(EventType.UNSHARE, t=6, pid=11, ppid=10, nstype=0x10000000, container=c))
    g.add(
        event(EventType.MOUNT, t=7, pid=11, ppid=10, source="proc", target="/p", fstype="proc", container=c)
    )
    assert _kinds(g) == {
        "forked",
        "executed",
        "opened",
        "connected",
        "entered-namespace",
        "mounted",
        "contains",
    }
    assert g.g.has_edge(("container", "c1"), ("proc", 10))
    assert g.g.nodes[("proc", 11)]["ppid"] == 10


def test_a_plain_read_leaves_no_edge_but_its_fd():
    g = ProvenanceGraph(600, 1000, 1000)
    g.add(event(EventType.OPEN, t=1, pid=10, path="/etc/hosts", ret=4, container=container("c1")))
    assert not [d for _, _, d in g.g.edges(data=True) if d["kind"] == "opened"]
    assert g.g.nodes[("proc", 10)]["state"].fds[4][0] == "/etc/hosts"


def test_lineage():
    g = ProvenanceGraph(600, 1000, 1000)
    g.add(event(EventType.FORK, t=1, pid=1, child_pid=10))
    g.add(event(EventType.FORK, t=1, pid=10, ppid=1, child_pid=11))
    g.add(event(EventType.FORK, t=1, pid=10, ppid=1, child_pid=12))
    g.add(event(EventType.OPEN, t=1, pid=99, ppid=98, path="/x"))
    assert g.is_descendant(11, 10) and g.is_descendant(11, 1) and not g.is_descendant(10, 11)
    assert g.kin(11, 12, 1) and not g.kin(11, 12, 0) and g.kin(11, 11, 0)
    assert not g.kin(11, 99, 8)


def test_window_evicts_by_event_time():
    g = ProvenanceGraph(10, 10_000, 10_000)
    for i in range(1000):
        g.add(event(EventType.OPEN, t=i, pid=i % 7, path=f"/f{i}", flags=0o101))
    nodes, edges = g.size
    assert edges <= 11 and nodes <= 11 + 7
    assert g.evicted["edge"] > 900


@pytest.mark.parametrize(("max_nodes", "max_edges"), [(100, 10_000), (10_000, 100)])
def test_budget_bounds_size_however_long_the_input(max_nodes, max_edges):
    g = ProvenanceGraph(3600, max_nodes, max_edges)
    peak = (0, 0)
    for i in range(20_000):
        g.add(event(EventType.OPEN, t=i * 0.001, pid=i % 50, path=f"/f{i}", flags=0o101))
        peak = max(peak, g.size)
    assert peak[0] <= max_nodes and peak[1] <= max_edges
    assert g.edge_count == g.g.number_of_edges()
    g.publish()
    text = render().decode()
    assert (
        "provex_correlate_graph_nodes" in text
        and 'provex_correlate_graph_evictions_total{cause="budget"' in text
    )


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="window_s"):
        ProvenanceGraph(0, 100, 100)


def test_link_tables_of_containers_quiet_past_the_window_are_forgotten():
    g = ProvenanceGraph(1, 1000, 1000)
    for cid, t in (("gone", 0), ("busy", 0)):
        g.add(event(EventType.LINK, t=t, pid=10, syscall="symlink", source="/etc/shadow", path=f"/tmp/{cid}",
                    ret=0, container=container(cid)))  # fmt: skip
    g.add(event(EventType.LINK, t=1.5, pid=10, syscall="symlink", source="/etc/hosts", path="/tmp/again",
                ret=0, container=container("busy")))  # fmt: skip
    g.add(event(EventType.OPEN, t=2.2, pid=11, path="/x", container=container("other")))
    g.publish()  # also every 1,024 events
    assert list(g._names) == ["busy"]  # "gone" wrote last at 0 s, outside the 1 s window
    g.add(event(EventType.OPEN, t=9, pid=11, path="/x", container=container("other")))
    g.publish()
    assert not g._names
