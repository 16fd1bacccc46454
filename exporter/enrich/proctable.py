"""The process table: pid -> exe, argv, parent, start, uid, cgroup.

Filled from /proc once at start-up, then kept current by the exec, fork and
exit events themselves. Bounded by an LRU. Exited processes stay (until
evicted) so that late events and their children's lineage still resolve; a
fork that reuses a pid replaces the old entry.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field

from exporter.enrich.fscontext import read_context
from exporter.enrich.metrics import PROCESS_EVICTIONS, PROCESS_MISSES
from exporter.enrich.redact import redact_argv
from exporter.model import Event, EventType, ProcessInfo


@dataclass(slots=True)
class ProcEntry:
    pid: int
    exe: str = ""
    argv: list[str] = field(default_factory=list)  # already redacted
    ppid: int = 0
    start_ns: int = 0
    uid: int = 0
    cgroup_id: int = 0
    exited_ns: int = 0
    # Filesystem context: a process whose fork the stream carried needs none; the others
    # get a CONTEXT event (cwd, root read from /proc) before their first event.
    forked_in_stream: bool = False
    context: tuple[str, str, int] | None = None  # (cwd, root, read at), from /proc
    context_sent: bool = False
    context_asked: bool = False


class ProcessTable:
    def __init__(self, max_entries: int = 65536, lineage_depth: int = 8) -> None:
        if max_entries < 1:
            raise ValueError(f"enrich.process_table_max must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self.lineage_depth = lineage_depth
        self._procs: OrderedDict[int, ProcEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._procs)

    def get(self, pid: int) -> ProcEntry | None:
        return self._procs.get(pid)

    def put(self, entry: ProcEntry) -> None:
        self._procs[entry.pid] = entry
        self._procs.move_to_end(entry.pid)
        while len(self._procs) > self.max_entries:
            self._procs.popitem(last=False)
            PROCESS_EVICTIONS.inc()

    def observe(self, event: Event) -> ProcEntry:
        """Update the table from one event; returns the acting process's entry."""
        entry = self._procs.get(event.pid)
        if entry is not None and entry.exited_ns and event.ts_ns > entry.exited_ns:
            # The pid was reused by a process whose fork was not seen (runc init is forked on
            # the host, then moves into the container): the exited entry is not its.
            entry = None
        if event.type is EventType.FORK and event.child_pid:
            parent = entry or self._touch_unknown(event)
            self.put(
                ProcEntry(
                    pid=event.child_pid,
                    exe=parent.exe,
                    argv=parent.argv,
                    ppid=event.pid,
                    start_ns=event.ts_ns,
                    uid=event.uid,
                    cgroup_id=event.cgroup_id,
                    forked_in_stream=True,
                )
            )
            return parent
        if entry is None:
            entry = self._touch_unknown(event)
        else:
            self._procs.move_to_end(event.pid)
        if event.type is EventType.EXEC and event.ret >= 0:
            entry.exe = _exec_target(event, entry.exe)
            entry.argv = redact_argv(list(event.argv))
            entry.uid = event.uid
            entry.cgroup_id = event.cgroup_id or entry.cgroup_id
            if event.ppid:
                entry.ppid = event.ppid
        elif event.type is EventType.EXIT and event.tid == event.pid:
            entry.exited_ns = event.ts_ns
        return entry

    def _touch_unknown(self, event: Event) -> ProcEntry:
        PROCESS_MISSES.inc()
        entry = ProcEntry(pid=event.pid, ppid=event.ppid, uid=event.uid, cgroup_id=event.cgroup_id)
        self.put(entry)
        return entry

    def info(self, entry: ProcEntry) -> ProcessInfo:
        """The ProcessInfo for an event of this process, with lineage."""
        ancestors: list[str] = []
        parent = self._procs.get(entry.ppid) if entry.ppid and entry.ppid != entry.pid else None
        seen = {entry.pid}
        node = parent
        while node is not None and len(ancestors) < self.lineage_depth and node.pid not in seen:
            seen.add(node.pid)
            ancestors.append(node.exe)
            node = self._procs.get(node.ppid) if node.ppid else None
        return ProcessInfo(
            pid=entry.pid,
            exe=entry.exe,
            argv=entry.argv,
            ppid=entry.ppid,
            start_ns=entry.start_ns,
            uid=entry.uid,
            ancestors=ancestors,
            parent_exe=parent.exe if parent else "",
            parent_argv=parent.argv if parent else [],
            lineage=self.lineage(entry),
        )

    def lineage(self, entry: ProcEntry) -> list[int]:
        """The pid, then its ancestors' nearest first, up to lineage_depth generations, as far
        as the table knows them; it stops after the first ancestor outside the process's
        cgroup (the runtime or shim that started the container's processes): past it, every
        container on the node would share the host's init. Rules of kin (x-provex-lineage)
        and documents (provex.lineage) read this same list."""
        chain = [entry.pid]
        node = entry
        while len(chain) <= self.lineage_depth and node.ppid and node.ppid not in chain:
            chain.append(node.ppid)
            parent = self._procs.get(node.ppid)
            if parent is None or parent.cgroup_id != entry.cgroup_id:
                break
            node = parent
        return chain

    def load_proc(
        self, proc: str = "/proc", boot_ns: int | None = None, cgroup_root: str | None = None
    ) -> int:
        """Fill the table from a /proc tree; returns how many processes were read.

        start_ns is wall-clock when boot_ns (wall-clock of boot) is given,
        else nanoseconds since boot.
        """
        hz = os.sysconf("SC_CLK_TCK")
        count = 0
        try:
            names = sorted(int(n) for n in os.listdir(proc) if n.isdigit())
        except OSError:
            return 0
        for pid in names:
            entry = read_proc_entry(proc, pid, hz, boot_ns or 0, cgroup_root)
            if entry is not None:
                self.put(entry)
                count += 1
        return count


def read_proc_entry(
    proc: str, pid: int, hz: int, boot_ns: int, cgroup_root: str | None = None
) -> ProcEntry | None:
    base = f"{proc}/{pid}"
    try:
        with open(f"{base}/stat", "rb") as f:
            stat = f.read().decode("utf-8", "replace")
        with open(f"{base}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"{base}/status", encoding="utf-8", errors="replace") as f:
            status = f.read()
    except OSError:
        return None  # gone, or not ours to read
    # comm may hold spaces and parentheses: fields start after the last ')'.
    rest = stat[stat.rfind(")") + 2 :].split()
    ppid = int(rest[1])
    start_ns = int(rest[19]) * 1_000_000_000 // hz + boot_ns
    uid = 0
    for line in status.splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
            break
    try:
        exe = os.readlink(f"{base}/exe")
    except OSError:
        exe = ""  # kernel threads, or no permission
    argv = [a.decode("utf-8", "replace") for a in cmdline.split(b"\0")[:-1]] if cmdline else []
    cgroup_id = _cgroup_id(base, cgroup_root) if cgroup_root else 0
    return ProcEntry(
        pid=pid,
        exe=exe,
        argv=redact_argv(argv),
        ppid=ppid,
        start_ns=start_ns,
        uid=uid,
        cgroup_id=cgroup_id,
        context=read_context(proc, pid),
    )


def _cgroup_id(base: str, cgroup_root: str) -> int:
    """The inode of the process's cgroup v2 directory (its bpf cgroup id), 0 if unknown."""
    try:
        with open(f"{base}/cgroup", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("0::"):
                    return os.stat(cgroup_root.rstrip("/") + line[3:].rstrip("\n")).st_ino
    except OSError:
        pass
    return 0


def _exec_target(event: Event, previous: str) -> str:
    """The image an exec loaded. Re-executing oneself through /proc/self/exe (busybox
    applets, runc) loads the same image again, so it keeps the known one, or stays unknown:
    "/proc/self/exe" names no image. (runc init's re-exec is seen inside the container when
    the runtime moves it into its cgroup before it runs; as an image it made the runtime's
    own unshare and mounts look like the container's.)"""
    if event.path in ("/proc/self/exe", f"/proc/{event.pid}/exe"):
        return previous
    return event.path or previous
