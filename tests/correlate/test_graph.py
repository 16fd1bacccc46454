"""The provenance graph: what it keeps per process and container, that it stays bounded in
event time and size and fair between containers, and the story it builds for an alert."""

from __future__ import annotations

import pytest

from exporter.correlate.graph import ProvenanceGraph
from exporter.metrics import render
from exporter.model import EventType, FileRef
from exporter.model.linux import AT_FDCWD

from .helpers import container, download_then_run, event


def test_history_keeps_what_a_story_tells_and_lineage():
    g = ProvenanceGraph(600, 1000, 1000)
    c = container("c1")
    g.add(event(EventType.FORK, t=1, pid=10, child_pid=11, container=c))
    g.add(event(EventType.EXEC, t=2, pid=11, ppid=10, path="/bin/x", container=c))
    g.add(event(EventType.OPEN, t=3, pid=11, ppid=10, path="/etc/x", flags=0o101, container=c))
    g.add(event(EventType.OPEN, t=3.5, pid=11, ppid=10, path="/etc/hosts", container=c))  # a plain read
    g.add(event(EventType.CONNECT, t=4, pid=11, ppid=10, daddr="10.0.0.1", dport=80, container=c))
    g.add(event(EventType.SETNS, t=5, pid=11, ppid=10, fd=3, nstype=0x20000, container=c))
    g.add(event(EventType.UNSHARE, t=6, pid=11, ppid=10, nstype=0x10000000, container=c))
    g.add(
        event(EventType.MOUNT, t=7, pid=11, ppid=10, source="proc", target="/p", fstype="proc", container=c)
    )
    kinds = [step.kind for step in g.process(11).history]
    assert kinds == [
        "executed",
        "wrote",
        "connected",
        "entered-namespace",
        "created-namespace",
        "mounted",
    ]
    assert g.parent(11) == 10 and g.process(11).cid == "c1"


def test_a_plain_read_leaves_no_step_but_its_fd():
    g = ProvenanceGraph(600, 1000, 1000)
    g.add(event(EventType.OPEN, t=1, pid=10, path="/etc/hosts", ret=4, container=container("c1")))
    state = g.process(10)
    assert not state.history and state.fds[4].path == "/etc/hosts"


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
    c = container("c1")
    g.add(event(EventType.CONNECT, t=0, pid=1, daddr="198.51.100.7", dport=80, family=2, container=c))
    for i in range(1000):  # each write carries the network origin: an entry per file
        g.add(event(EventType.OPEN, t=i, pid=1, path=f"/f{i}", flags=0o101, ret=3, container=c))
    g.publish()
    assert len(g.containers["c1"].files) <= 11
    assert g.evicted["file"] > 900


@pytest.mark.parametrize(("max_nodes", "max_edges"), [(100, 10_000), (10_000, 100)])
def test_budget_bounds_size_however_long_the_input(max_nodes, max_edges):
    g = ProvenanceGraph(3600, max_nodes, max_edges)
    peak_nodes = 0
    c = container("c1")
    for i in range(20_000):
        g.add(event(EventType.OPEN, t=i * 0.001, pid=i % 50, path=f"/f{i}", flags=0o101, ret=3 + i % 7,
                    container=c))  # fmt: skip
        peak_nodes = max(peak_nodes, g.size[0])
    assert peak_nodes <= max_nodes
    g.publish()
    assert g.size[1] <= max_edges
    assert g.size[0] == sum(state.usage for state in g.containers.values())
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
        g.add(event(EventType.LINK, t=t, pid=10 if cid == "gone" else 20, syscall="symlink", source="/etc/shadow",
                    path=f"/tmp/{cid}", ret=0, container=container(cid)))  # fmt: skip
    g.add(event(EventType.EXIT, t=0.1, pid=10, container=container("gone")))
    g.add(event(EventType.LINK, t=1.5, pid=20, syscall="symlink", source="/etc/hosts", path="/tmp/again",
                ret=0, container=container("busy")))  # fmt: skip
    g.add(event(EventType.OPEN, t=2.2, pid=11, path="/x", container=container("other")))
    g.publish()
    assert "gone" not in g.containers  # no process left, quiet past the window: forgotten whole
    assert list(g.containers["busy"].symlinks) == ["/tmp/again"]


def test_one_container_churning_names_cannot_evict_another_containers_context():
    """Fairness: the budget is shared by containers; the one holding the most gives back first."""
    g = ProvenanceGraph(3600, 2_000, 100_000)
    quiet, noisy = container("quiet"), container("noisy")
    for pid in range(100, 110):  # ten live processes, each with a cwd and a dirfd
        g.add(event(EventType.CHDIR, t=0, pid=pid, path=f"/srv/{pid}", syscall="chdir", container=quiet))
        g.add(event(EventType.OPEN, t=0, pid=pid, path="/host", flags=0o200000, ret=5, container=quiet))
    for i in range(50_000):  # links, writes and fds of a churning container
        t = 1 + i * 1e-4
        if i % 3 == 0:
            g.add(event(EventType.LINK, t=t, pid=2000 + i % 500, syscall="symlink", source="/x", path=f"/l{i}",
                        ret=0, container=noisy))  # fmt: skip
        else:
            g.add(
                event(
                    EventType.OPEN, t=t, pid=2000 + i % 500, path=f"/f{i}", ret=3 + i % 200, container=noisy
                )
            )
    assert g.size[0] <= 2_000
    for pid in range(100, 110):
        e = event(EventType.OPEN, t=9, pid=pid, path="etc/shadow", dirfd=5, syscall="openat", container=quiet)
        g.add(e)
        assert e.resolved_path == "/host/etc/shadow"
        rel = event(EventType.OPEN, t=9, pid=pid, path="x", dirfd=AT_FDCWD, container=quiet)
        g.add(rel)
        assert rel.resolved_path == f"/srv/{pid}/x"
    assert g.evicted.get("link", 0) > 0 or g.evicted.get("fd", 0) > 0


def test_a_gone_container_is_released():
    g = ProvenanceGraph(600, 10_000, 10_000)
    c = container("c1")
    g.add(event(EventType.FORK, t=1, pid=10, child_pid=11, container=c))
    g.add(event(EventType.OPEN, t=2, pid=11, path="/a", flags=0o101, ret=3, container=c))
    before = g.size[0]
    g.forget_container("c1")
    assert g.size[0] < before and "c1" not in g.containers and g.process(11) is None


def test_a_pipe_fed_later_by_a_download_rejudges_the_interpreter():
    g = ProvenanceGraph(600, 10_000, 10_000)
    c = container("c1")
    pipe = FileRef(13, 4242, 0o010600)
    g.add(event(EventType.EXEC, t=1, pid=20, path="/usr/bin/curl", stdout=pipe, container=c))
    sh = event(EventType.EXEC, t=1.1, pid=21, path="/bin/sh", argv=["sh"], stdin=pipe, container=c)
    g.add(sh)
    assert not sh.origin and not g.take_rejudged()
    g.add(event(EventType.CONNECT, t=1.2, pid=20, daddr="198.51.100.7", dport=80, family=2, container=c))
    (late,) = g.take_rejudged()
    assert late is sh and late.carrier == "pipe" and [r.step for r in late.origin] == ["connect"]


def test_story_of_an_alert_is_a_graph_of_its_processes_and_what_they_did():
    g = ProvenanceGraph(600, 10_000, 10_000)
    story = g.story(download_then_run(g))
    assert ("proc", 11) in story and ("endpoint", "198.51.100.7:80") in story and ("file", "/tmp/x") in story
    kinds = {d["kind"] for _, _, d in story.edges(data=True)}
    assert {"connected", "wrote", "executed", "contains"} <= kinds
    assert story.nodes[("proc", 11)]["exe"] == "/usr/bin/wget"


def test_a_reused_inode_number_on_another_tmpfs_carries_no_origin():
    """A tmpfs's anonymous device number is reused by the next tmpfs, and its first file gets
    the same inode number: the generation the kernel reads tells the two files apart."""
    g = ProvenanceGraph(600, 10_000, 10_000)
    a, b = container("a"), container("b")
    g.add(event(EventType.CONNECT, t=1, pid=10, daddr="198.51.100.7", dport=80, family=2, container=a))
    g.add(event(EventType.OPEN, t=2, pid=10, path="/tmp/tool", flags=0o1101, ret=3, container=a,
                file=FileRef(43, 2, 0o100644, gen=111)))  # fmt: skip
    run_a = event(
        EventType.EXEC, t=3, pid=11, path="/tmp/tool", container=a, file=FileRef(43, 2, 0o100755, gen=111)
    )
    g.add(run_a)
    assert run_a.origin
    g.add(event(EventType.OPEN, t=4, pid=20, path="/tmp/runc", flags=0o1101, ret=3, container=b,
                file=FileRef(43, 2, 0o100644, gen=222)))  # fmt: skip
    run_b = event(
        EventType.EXEC, t=5, pid=20, path="/tmp/runc", container=b, file=FileRef(43, 2, 0o100755, gen=222)
    )
    g.add(run_b)
    assert not run_b.origin
