"""Release what the agent keeps of a container once its cgroup is gone.

The kernel reports each removed cgroup (bpf/process.c: cgroup_rmdir). After a short grace
(records of its last moments may still be in the rings, or parked in enrichment), the
container's provenance state, its view of the sensitive set, the enrichment caches of its
cgroup, and its entries in the kernel's per-cgroup tables are let go. Under container churn
this is what keeps memory flat: nothing else would release them before the window, or before
their tables' bounds.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from prometheus_client import Counter

from exporter.metrics import REGISTRY
from exporter.model import ContainerInfo

log = logging.getLogger("provex.agent")

GRACE_S = 5.0
REAPED = Counter(
    "provex_containers_released",
    "Containers whose cgroup was removed and whose state the agent let go",
    registry=REGISTRY,
)


class ContainerReaper:
    def __init__(
        self,
        identify: Callable[[int], ContainerInfo | None],
        release: list[Callable[[int, str], None]],
        grace_s: float = GRACE_S,
        tell: list[Callable[[str], None]] = (),
    ) -> None:
        self.identify = identify
        self.release = release  # each called with (cgroup id, container id or "") after the grace
        self.tell = list(tell)  # each called with the container id at once
        self.grace_ns = int(grace_s * 1e9)
        self._due: deque[tuple[int, int, str]] = deque()  # (due, cgroup id, container id)

    def cgroup_gone(self, cgroup_id: int, now_ns: int) -> None:
        """A cgroup_rmdir record (the agent's thread): name its container now, while the caches
        still know it, and release it after the grace."""
        info = self.identify(cgroup_id)
        container_id = info.id if info is not None else ""
        if container_id:
            for tell in self.tell:
                tell(container_id)
        self._due.append((now_ns + self.grace_ns, cgroup_id, container_id))

    def tick(self, now_ns: int) -> int:
        """Release the containers whose grace has passed; returns how many."""
        done = 0
        while self._due and self._due[0][0] <= now_ns:
            _, cgroup_id, container_id = self._due.popleft()
            for release in self.release:
                try:
                    release(cgroup_id, container_id)
                except Exception:  # one part failing must not keep the others
                    log.exception("releasing a gone container failed")
            done += 1
        if done:
            REAPED.inc(done)
        return done
