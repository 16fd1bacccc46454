"""Per-container host bind mounts from /proc/<pid>/mountinfo, resolved on a worker thread."""

from __future__ import annotations

import errno
import logging

from exporter.enrich.metrics import MOUNT_ERRORS
from exporter.enrich.mountinfo import MountinfoError, host_bind_mounts, parse_mountinfo
from exporter.enrich.worker import QueueWorker
from exporter.model import HostMount

# A process that exited between its event and this read: ENOENT, or EINVAL/ESRCH while dying.
_GONE = frozenset({errno.ENOENT, errno.ESRCH, errno.EINVAL})

log = logging.getLogger("provex.enrich")


class MountResolver(QueueWorker[tuple[str, int]]):
    """`get` answers from the cache; `request` queues a resolution for the worker."""

    thread_name = "provex-mounts"

    def __init__(self, proc: str = "/proc", host_pid: str = "1", max_containers: int = 16384) -> None:
        super().__init__()
        self.proc = proc
        self.host_pid = host_pid
        self.max_containers = max_containers
        self._mounts: dict[str, tuple[HostMount, ...]] = {}
        self._requested: set[str] = set()
        self.generation = 0

    def get(self, container_id: str) -> tuple[HostMount, ...] | None:
        return self._mounts.get(container_id)

    def forget(self, container_id: str) -> None:
        """The container is gone."""
        self._mounts.pop(container_id, None)
        self._requested.discard(container_id)

    def request(self, container_id: str, *pids: int) -> None:
        """Resolve a container's mounts through the first of `pids` still alive (an event's
        process may be a short-lived tool: its parent, or the container's first process,
        usually outlives it)."""
        if container_id in self._requested:
            return
        if len(self._requested) >= self.max_containers:
            self._requested.clear()  # bounded; resolved ones stay in _mounts until it is cleared too
            self._mounts.clear()
        self._requested.add(container_id)
        if self.running:  # not started (tests, replay): resolve_now() does it on demand
            self.submit((container_id, *pids))

    def handle(self, item: tuple[int | str, ...]) -> None:
        container_id, *pids = item
        for pid in dict.fromkeys(p for p in pids if p):  # in order, each once
            if self.resolve_now(str(container_id), int(pid), retry_later=False) is not None:
                return
        self._requested.discard(str(container_id))  # every one gone: retry with a later event

    def resolve_now(
        self, container_id: str, pid: int, retry_later: bool = True
    ) -> tuple[HostMount, ...] | None:
        """The container's host mounts read through `pid`; None if that process is gone."""
        try:
            host_text = self._read(self.host_pid)
            cont_text = self._read(str(pid))
            mounts = tuple(
                host_bind_mounts(
                    parse_mountinfo(cont_text, f"{self.proc}/{pid}/mountinfo"),
                    parse_mountinfo(host_text, f"{self.proc}/{self.host_pid}/mountinfo"),
                )
            )
        except OSError as exc:
            if exc.errno not in _GONE:
                return self._unreadable(container_id, pid, exc)
            # The process exited (a dying process's mountinfo reads EINVAL): not an error.
            MOUNT_ERRORS.labels("process_gone").inc()
            if retry_later:
                self._requested.discard(container_id)  # retry with a later event's pid
            return None
        except MountinfoError as exc:
            return self._unreadable(container_id, pid, exc)
        return self._store(container_id, mounts)

    def _unreadable(self, container_id: str, pid: int, exc: Exception) -> tuple[HostMount, ...]:
        MOUNT_ERRORS.labels("unreadable" if isinstance(exc, OSError) else "bad_mountinfo").inc()
        log.warning("cannot read container mounts", extra={"fields": {"pid": pid, "error": str(exc)}})
        return self._store(container_id, ())

    def _store(self, container_id: str, mounts: tuple[HostMount, ...]) -> tuple[HostMount, ...]:
        self._mounts[container_id] = mounts
        self.generation += 1
        return mounts

    def _read(self, pid: str) -> str:
        with open(f"{self.proc}/{pid}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
