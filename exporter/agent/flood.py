"""Name the containers that flood, and only those.

The kernel counts, per cgroup, what that cgroup's own flood cost it: bulk events sampled
away past its budgets (probes.flood_*_rate), decisive events summarized past its budget
per kind (probes.decisive_rate), and sensitive reads folded into repeats. Reads shed while
the agent lagged are not counted there: they are every container's loss, not the doing of
the one whose reads were shed, so a flood never names its victims. Once per interval this
turns the counts into metrics per container and one warning line per flooding container,
naming its Pod. A cgroup not resolved yet (its container's first moments) is named at the
next interval, once the background rescan has found it.
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
    "Bulk events of a flooding container sampled away in the kernel (past its cgroup's budget)",
    ["container", "pod", "namespace"],
    registry=REGISTRY,
)
FLOOD_FOLDED = Counter(
    "provex_flood_folded",
    "Events of a flooding container the kernel counted instead of sending: decisive events past "
    "its cgroup's budget for their kind (summarized), repeated sensitive reads (repeated)",
    ["container", "pod", "namespace", "how"],
    registry=REGISTRY,
)
MAX_LABELLED = 64  # containers with their own label set; the rest are counted under "other"
Stats = tuple[int, int, int]  # sampled, summarized, repeated


class FloodReporter:
    def __init__(
        self,
        read_counts: Callable[[], dict[int, Stats]],
        identify: Callable[[int], ContainerInfo | None],
    ) -> None:
        self.read_counts = read_counts
        self.identify = identify
        self.last: dict[int, Stats] = {}
        self.labelled: set[tuple[str, str, str]] = set()
        self._waited: set[int] = set()  # cgroups given one interval to be resolved

    def report(self, final: bool = False) -> dict[str, int]:
        """Report each container's flood since the last call; returns the events it cost
        (sampled, summarized, repeated) by container id. `final`: name unresolved cgroups
        now, by id, rather than wait for their resolution."""
        now = self.read_counts()
        out: dict[str, int] = {}
        for cgroup_id, totals in now.items():
            before = self.last.get(cgroup_id, (0, 0, 0))
            delta = tuple(max(0, t - b) for t, b in zip(totals, before, strict=True))
            if not any(delta):
                continue
            info = self.identify(cgroup_id)
            if info is None and not final and cgroup_id not in self._waited:
                self._waited.add(cgroup_id)
                now[cgroup_id] = before  # counted again next time, when it may be known
                continue
            self._waited.discard(cgroup_id)
            container = info.id if info is not None else f"cgroup:{cgroup_id}"
            pod = info.pod.name if info is not None and info.pod is not None else ""
            namespace = info.pod.namespace if info is not None and info.pod is not None else ""
            labels = (container, pod, namespace)
            if labels not in self.labelled and len(self.labelled) >= MAX_LABELLED:
                labels = ("other", "", "")
            self.labelled.add(labels)
            sampled, summarized, repeated = delta
            if sampled:
                FLOOD_SAMPLED.labels(*labels).inc(sampled)
            if summarized:
                FLOOD_FOLDED.labels(*labels, "summarized").inc(summarized)
            if repeated:
                FLOOD_FOLDED.labels(*labels, "repeated").inc(repeated)
            out[container] = out.get(container, 0) + sum(delta)
            log.warning(
                "container flooding: events sampled or folded in the kernel",
                extra={
                    "fields": {
                        "container": container,
                        "pod": pod,
                        "namespace": namespace,
                        "cgroup_id": cgroup_id,
                        "sampled": sampled,
                        "summarized": summarized,
                        "repeated": repeated,
                        "sampled_total": totals[0],
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
