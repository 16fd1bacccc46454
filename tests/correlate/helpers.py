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
