"""Process table: a pid reused by a process whose fork was not seen gets no stale identity.

Found live by bench/eval.py (3200 trials, pid_max 32768): runc init, forked on the
host and moved into a new container, reused the pid of an exited /bin/sh of an earlier
container, inherited its image, and so escaped the runtime filter of container_unshare
and container_mount (which filter runc init by comm *and* an unknown image).
"""

from __future__ import annotations

from exporter.config.schema import CorrelateConfig
from exporter.correlate.engine import build_correlator
from exporter.enrich.proctable import ProcessTable
from exporter.model import ContainerInfo, Event, EventType


def ev(n: int, type_: EventType, pid: int, **kw) -> Event:
    return Event(id=f"e{n}", type=type_, syscall=type_.value, ts_ns=1_000 + n, pid=pid, tid=pid, **kw)


def test_an_event_after_the_exit_of_its_pid_starts_a_fresh_entry() -> None:
    t = ProcessTable(max_entries=100)
    t.observe(ev(1, EventType.EXEC, 500, path="/bin/sh", argv=["sh", "-c", "cat x"]))
    t.observe(ev(2, EventType.EXIT, 500))
    # The pid comes back as runc init: its unshare is the first event the agent sees of it.
    entry = t.observe(ev(3, EventType.UNSHARE, 500, comm="runc:[1:CHILD]", nstype=0x20000))
    assert (entry.exe, entry.argv, entry.exited_ns) == ("", [], 0)
    # Its re-exec through /proc/self/exe cannot inherit the dead shell's image either.
    entry = t.observe(ev(4, EventType.EXEC, 500, path="/proc/self/exe", argv=["runc", "init"]))
    assert entry.exe == ""  # unknown, so the rules' runtime filters (Image: null) apply


def test_a_reused_parent_pid_does_not_hand_its_stale_image_to_a_child() -> None:
    t = ProcessTable(max_entries=100)
    t.observe(ev(1, EventType.EXEC, 600, path="/bin/sysprobe", argv=["sysprobe"]))
    t.observe(ev(2, EventType.EXIT, 600))
    t.observe(ev(3, EventType.FORK, 600, child_pid=601))
    child = t.get(601)
    assert child is not None and child.exe == "" and child.ppid == 600


def test_events_of_a_live_process_and_late_events_keep_the_entry() -> None:
    t = ProcessTable(max_entries=100)
    t.observe(ev(5, EventType.EXEC, 700, path="/bin/cat", argv=["cat"]))
    assert t.observe(ev(6, EventType.OPEN, 700, path="/etc/passwd")).exe == "/bin/cat"
    t.observe(ev(9, EventType.EXIT, 700))
    # An event stamped before the exit (drained late from another CPU) is still the same process.
    assert t.observe(ev(7, EventType.OPEN, 700, path="/etc/hostname")).exe == "/bin/cat"


def test_runc_init_on_a_reused_pid_stays_filtered_by_the_runtime_rules() -> None:
    t = ProcessTable(max_entries=100)
    correlator = build_correlator(CorrelateConfig())
    container = ContainerInfo(id="c" * 64)
    t.observe(ev(1, EventType.EXEC, 800, path="/bin/sh", argv=["sh"]))
    t.observe(ev(2, EventType.EXIT, 800))
    unshare = ev(3, EventType.UNSHARE, 800, comm="runc:[1:CHILD]", nstype=0x6C020000, container=container)
    unshare.process = t.info(t.observe(unshare))
    assert correlator.process(unshare) == []
