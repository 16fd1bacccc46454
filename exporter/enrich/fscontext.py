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
import queue
import threading
import time

from cachetools import LRUCache

from exporter.enrich.metrics import CONTEXT_READS

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


class ContextReader:
    """`get` answers from the cache; `request` queues a read for the worker."""

    def __init__(self, proc: str = "/proc", max_entries: int = 16384) -> None:
        self.proc = proc
        self._seeds: LRUCache[int, Seed | None] = LRUCache(max_entries)
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def get(self, pid: int) -> Seed | None:
        return self._seeds.get(pid)

    def request(self, pid: int) -> None:
        if self._thread is None:
            self.read_now(pid)  # not started (tests): read on demand
        else:
            self._queue.put(pid)

    def read_now(self, pid: int) -> Seed | None:
        seed = read_context(self.proc, pid)
        CONTEXT_READS.labels("read" if seed else "process_gone").inc()
        self._seeds[pid] = seed
        return seed

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="provex-fscontext", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while (pid := self._queue.get()) is not None:
            self.read_now(pid)
