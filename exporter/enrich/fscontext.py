"""A process's current and root directory, read from /proc on a worker thread.

The provenance graph follows chdir, chroot and fork in the event stream; a
process that started before the agent (or whose fork was lost) never told the
stream where it stands. Its context is read here, off the hot path, and the
enrich stage puts it into the stream as a CONTEXT event just before that
process's next event, so a recording replays the same way.

`readlink /proc/<pid>/cwd` of a process in a container that pivoted into its
root reads as a path inside the container (its root is not reachable from the
reader's), which is the form the graph keeps. A runtime that chroots instead
of pivoting shows host paths here; the graph then resolves relative to them.
"""

from __future__ import annotations

import logging
import os
import time

from cachetools import LRUCache

from exporter.enrich.metrics import CONTEXT_READS
from exporter.enrich.worker import QueueWorker

log = logging.getLogger("provex.enrich")

Seed = tuple[str, str, int]  # (cwd, root, wall-clock ns of the read)


def read_context(proc: str, pid: int) -> Seed | None:
    """(cwd, root, when) of a live process, None if it is gone or unreadable."""
    try:
        cwd = os.readlink(f"{proc}/{pid}/cwd")
        root = os.readlink(f"{proc}/{pid}/root")
    except OSError:
        return None
    return cwd.removesuffix(" (deleted)"), root, time.time_ns()


class ContextReader(QueueWorker[int]):
    """`get` answers from the cache; `request` queues a read for the worker."""

    thread_name = "provex-fscontext"

    def __init__(self, proc: str = "/proc", max_entries: int = 16384) -> None:
        super().__init__()
        self.proc = proc
        self._seeds: LRUCache[int, Seed | None] = LRUCache(max_entries)

    def get(self, pid: int) -> Seed | None:
        return self._seeds.get(pid)

    def request(self, pid: int) -> None:
        self.submit(pid)

    def handle(self, pid: int) -> None:
        self.read_now(pid)

    def read_now(self, pid: int) -> Seed | None:
        seed = read_context(self.proc, pid)
        CONTEXT_READS.labels("read" if seed else "process_gone").inc()
        self._seeds[pid] = seed
        return seed
