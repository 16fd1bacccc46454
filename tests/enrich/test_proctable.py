"""Process table: from /proc at start-up, from exec/fork/exit events, lineage, LRU bound."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from exporter.enrich.proctable import ProcEntry, ProcessTable
from exporter.model import Event, EventType


def ev(n: int, type_: EventType, pid: int, **kw) -> Event:
    return Event(id=f"e{n}", type=type_, syscall=type_.value, ts_ns=1_000 + n, pid=pid, tid=pid, **kw)


def test_exec_fork_exit_sequence_and_lineage() -> None:
    t = ProcessTable(max_entries=100, lineage_depth=8)
    t.put(ProcEntry(pid=1, exe="/sbin/init", argv=["/sbin/init"]))
    t.observe(ev(1, EventType.FORK, 1, child_pid=100))
    t.observe(ev(2, EventType.EXEC, 100, ppid=1, path="/usr/bin/bash", argv=["bash"]))
    t.observe(ev(3, EventType.FORK, 100, child_pid=200))
    child = t.get(200)
    assert child is not None and (child.exe, child.ppid, child.start_ns) == ("/usr/bin/bash", 100, 1003)
    e = ev(
        4,
        EventType.EXEC,
        200,
        ppid=100,
        path="/usr/bin/curl",
        argv=["curl", "-u", "a:b", "http://h"],
        uid=1000,
    )
    entry = t.observe(e)
    info = t.info(entry)
    assert info.exe == "/usr/bin/curl"
    assert info.argv == ["curl", "-u", "a:***", "http://h"]
    assert info.uid == 1000 and info.ppid == 100 and info.start_ns == 1003
    assert info.parent_exe == "/usr/bin/bash" and info.parent_argv == ["bash"]
    assert info.ancestors == ["/usr/bin/bash", "/sbin/init"]
    # Exit keeps the entry (late events, children's lineage) and marks it.
    t.observe(ev(5, EventType.EXIT, 100))
    assert t.get(100) is not None and t.get(100).exited_ns == 1005
    assert t.info(t.get(200)).ancestors == ["/usr/bin/bash", "/sbin/init"]
    # A fork that reuses a pid replaces the old entry.
    t.observe(ev(6, EventType.FORK, 1, child_pid=100))
    assert t.get(100).exited_ns == 0 and t.get(100).exe == "/sbin/init"


def test_failed_exec_does_not_change_the_image() -> None:
    t = ProcessTable()
    t.put(ProcEntry(pid=5, exe="/bin/sh", argv=["sh"]))
    t.observe(ev(1, EventType.EXEC, 5, path="/nonexistent", argv=["x"], ret=-2))
    assert t.get(5).exe == "/bin/sh"


def test_lineage_depth_and_cycles() -> None:
    t = ProcessTable(lineage_depth=2)
    for pid in range(2, 7):
        t.put(ProcEntry(pid=pid, exe=f"/bin/p{pid}", ppid=pid - 1))
    t.put(ProcEntry(pid=1, exe="/init", ppid=6))  # a cycle must not loop
    assert t.info(t.get(6)).ancestors == ["/bin/p5", "/bin/p4"]
    t.lineage_depth = 10
    assert t.info(t.get(6)).ancestors == ["/bin/p5", "/bin/p4", "/bin/p3", "/bin/p2", "/init"]


def test_lru_bound() -> None:
    t = ProcessTable(max_entries=3)
    for pid in (1, 2, 3):
        t.put(ProcEntry(pid=pid))
    t.observe(ev(1, EventType.OPEN, 1))  # touch 1: 2 is now the oldest
    t.put(ProcEntry(pid=4))
    assert len(t) == 3 and t.get(2) is None and t.get(1) is not None
    with pytest.raises(ValueError, match="process_table_max"):
        ProcessTable(max_entries=0)


def test_unknown_pid_gets_a_minimal_entry() -> None:
    t = ProcessTable()
    entry = t.observe(ev(1, EventType.OPEN, 4242, ppid=1, uid=7, cgroup_id=99))
    assert (entry.pid, entry.ppid, entry.uid, entry.cgroup_id, entry.exe) == (4242, 1, 7, 99, "")


def test_load_from_proc_sees_a_real_child_with_redacted_argv() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "--password=hunter2"], stdin=subprocess.PIPE
    )
    try:
        t = ProcessTable()
        n = t.load_proc("/proc", boot_ns=0, cgroup_root="/sys/fs/cgroup/unified")
        assert n > 1
        me = t.get(os.getpid())
        entry = t.get(child.pid)
        assert me is not None and entry is not None
        assert entry.ppid == os.getpid()
        assert entry.exe == os.path.realpath(sys.executable)
        assert entry.argv[-1] == "--password=***"
        assert entry.uid == os.getuid()
        assert entry.start_ns >= me.start_ns
    finally:
        child.communicate(b"")


def test_reexec_through_proc_self_exe_keeps_the_known_image() -> None:
    # busybox runs applets (and runc re-runs itself) by exec'ing /proc/self/exe.
    t = ProcessTable(max_entries=100, lineage_depth=8)
    t.observe(ev(1, EventType.EXEC, 300, path="/bin/busybox", argv=["sh"]))
    entry = t.observe(ev(2, EventType.EXEC, 300, path="/proc/self/exe", argv=["cat", "/etc/passwd"]))
    assert entry.exe == "/bin/busybox" and entry.argv == ["cat", "/etc/passwd"]
    entry = t.observe(ev(3, EventType.EXEC, 300, path="/usr/bin/id", argv=["id"]))
    assert entry.exe == "/usr/bin/id"
