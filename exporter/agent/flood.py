"""Name the containers whose events the kernel's flood budget sampled away.

The kernel counts, per cgroup, the events it dropped because that cgroup went
past its budget (probes.flood_*_rate). Once per interval this turns the counts
into a metric per container and one warning line per flooding container,
naming its Pod, so a flood is seen for what it is (and whose it is).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import Counter, Gauge

from exporter.metrics import REGISTRY
from exporter.model import ContainerInfo

log = logging.getLogger("provex.agent")

FLOOD_SAMPLED = Counter(
    "provex_flood_sampled",
    "Events of a flooding container sampled away in the kernel (past its cgroup's budget)",
    ["container", "pod", "namespace"],
    registry=REGISTRY,
)
MAX_LABELLED = 64  # containers with their own label set; the rest are counted under "other"


class FloodReporter:
    def __init__(
        self,
        read_counts: Callable[[], dict[int, int]],
        identify: Callable[[int], ContainerInfo | None],
    ) -> None:
        self.read_counts = read_counts
        self.identify = identify
        self.last: dict[int, int] = {}
        self.labelled: set[tuple[str, str, str]] = set()

    def report(self) -> dict[str, int]:
        """Report what was sampled since the last call; returns it by container id."""
        now = self.read_counts()
        out: dict[str, int] = {}
        for cgroup_id, total in now.items():
            delta = total - self.last.get(cgroup_id, 0)
            if delta <= 0:
                continue
            info = self.identify(cgroup_id)
            container = info.id if info is not None else f"cgroup:{cgroup_id}"
            pod = info.pod.name if info is not None and info.pod is not None else ""
            namespace = info.pod.namespace if info is not None and info.pod is not None else ""
            labels = (container, pod, namespace)
            if labels not in self.labelled and len(self.labelled) >= MAX_LABELLED:
                labels = ("other", "", "")
            self.labelled.add(labels)
            FLOOD_SAMPLED.labels(*labels).inc(delta)
            out[container] = out.get(container, 0) + delta
            log.warning(
                "container flooding: events sampled away in the kernel",
                extra={
                    "fields": {
                        "container": container,
                        "pod": pod,
                        "namespace": namespace,
                        "cgroup_id": cgroup_id,
                        "sampled": delta,
                        "sampled_total": total,
                    }
                },
            )
        self.last = now
        return out


PRESSURE = Gauge(
    "provex_kernel_pressure",
    "1 while the agent lags behind the ring buffer and the kernel tightens every flood budget",
    registry=REGISTRY,
)
PRESSURE_ENGAGED = Counter(
    "provex_kernel_pressure_engaged",
    "Times the agent lagged behind the ring buffer and tightened the kernel's flood budgets",
    registry=REGISTRY,
)


class Pressure:
    """Switch the kernel's flood budgets to their tight setting while the consumer lags
    (the oldest record of a drain waited longer than `on_ms` in the ring), and back once
    it has kept up for a while: the ring then holds little bulk, so a decisive event of
    any container waits behind at most a few milliseconds of others' reads, not behind a
    whole ring of them."""

    def __init__(
        self,
        set_pressure: Callable[[bool], None],
        on_ms: float = 200.0,
        off_ms: float = 20.0,
        on_after: int = 3,
        off_after: int = 200,
    ) -> None:
        self.set_pressure = set_pressure
        self.on_ns, self.off_ns = int(on_ms * 1e6), int(off_ms * 1e6)
        self.on_after = on_after  # drains in a row that lagged
        self.off_after = off_after  # drains in a row that kept up (a drain is <= 5 ms apart)
        self.on = False
        self._run = 0

    def update(self, lag_ns: int) -> None:
        switch = lag_ns > self.on_ns if not self.on else lag_ns < self.off_ns
        self._run = self._run + 1 if switch else 0
        if self._run < (self.off_after if self.on else self.on_after):
            return
        self.on = not self.on
        self._run = 0
        self.set_pressure(self.on)
        PRESSURE.set(1 if self.on else 0)
        if self.on:
            PRESSURE_ENGAGED.inc()
            log.warning("agent lags behind the ring buffer: flood budgets tightened",
                        extra={"fields": {"lag_ms": round(lag_ns / 1e6, 1)}})  # fmt: skip
        else:
            log.info("agent caught up: flood budgets back to normal")
