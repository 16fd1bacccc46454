"""Small builders for correlate tests: events and rule files."""

from __future__ import annotations

import textwrap
from pathlib import Path

from exporter.model import ContainerInfo, Event, EventType, HostMount, PodInfo, ProcessInfo

T0 = 1_764_000_000_000_000_000
S = 1_000_000_000
REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "correlate"  # the SigmaHQ survey report
RULE_FIXTURES = REPO / "exporter" / "correlate" / "rules" / "fixtures"

_n = 0


def container(cid: str = "c1", mounts: list[tuple[str, str]] = (), namespace: str = "shop") -> ContainerInfo:
    return ContainerInfo(
        id=cid,
        pod=PodInfo(uid=f"u-{cid}", name=f"p-{cid}", namespace=namespace, service_account="default"),
        host_mounts=[HostMount(host_path=h, container_path=c) for h, c in mounts],
    )


def event(type_: EventType = EventType.OPEN, t: float = 0, pid: int = 10, **kw) -> Event:
    global _n
    _n += 1
    kw.setdefault("syscall", type_.value)
    kw.setdefault("ppid", 1)
    exe = kw.pop("exe", "/bin/sh")
    return Event(
        id=kw.pop("id", f"e{_n}"),
        type=type_,
        ts_ns=T0 + int(t * S),
        pid=pid,
        tid=pid,
        process=ProcessInfo(pid=pid, exe=exe, argv=[exe, "-c", "x"]),
        **kw,
    )


def download_then_run(graph) -> list:
    """A download run from a file: wget (forked by pid 10) connects out and writes /tmp/x,
    which a sibling then executes, all added to `graph`; the connect's and the exec's
    evidence refs (a story's evidence)."""
    from exporter.model import evidence_ref

    c = container("c1")
    graph.add(event(EventType.FORK, t=1, pid=10, child_pid=11, container=c))
    graph.add(event(EventType.EXEC, t=2, pid=11, ppid=10, path="/usr/bin/wget", container=c))
    conn = event(
        EventType.CONNECT, t=3, pid=11, ppid=10, daddr="198.51.100.7", dport=80, family=2, container=c
    )
    graph.add(conn)
    graph.add(event(EventType.OPEN, t=4, pid=11, ppid=10, path="/tmp/x", flags=0o101, ret=3, container=c))
    run = event(EventType.EXEC, t=5, pid=12, ppid=10, path="/tmp/x", container=c)
    graph.add(run)
    return [evidence_ref(conn, "connect"), evidence_ref(run, "exec")]


def write_rule(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


SIMPLE = """
title: Simple
id: 0b7c1ee4-5b5c-4a59-9a55-4b0b6f0a0001
name: simple
logsource:
  product: linux
  category: file_access
detection:
  selection:
    TargetFilename: /etc/shadow
  condition: selection
tags:
  - attack.t1611
level: high
"""
