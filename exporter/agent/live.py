"""`provex run` and `provex record`: the live event loop.

One thread drains the ring buffer and runs the pipeline; nothing on it waits
on I/O (sinks queue, enrichment answers from cache). SIGTERM/SIGINT stop the
loop; the probes are detached and the output flushed before exit. SIGHUP
reloads the rules (exporter.agent.reload); so does a change of a rules directory.
A stdout whose reader has gone (`provex run | head`) ends the run, exit 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections import OrderedDict
from typing import Any

from prometheus_client import Gauge

from exporter.agent.build import Stages, StartupError, build_stages
from exporter.agent.flood import FloodReporter, Pressure
from exporter.agent.health import HealthState, serve
from exporter.agent.losses import KernelLossReporter, Ledger
from exporter.agent.reaper import ContainerReaper
from exporter.agent.reload import RuleReloader, alerting_rules
from exporter.agent.startup import NoContainerHint, summary
from exporter.config import Config
from exporter.emit.jsonlines import OUTPUT_CLOSED, JsonLinesSink, OutputFileError
from exporter.enrich.identity import IdentityRegistry
from exporter.metrics import REGISTRY
from exporter.model import Event, EventType
from exporter.model.linux import WRITE_FLAGS
from exporter.probes import metrics as probe_metrics
from exporter.probes.loader import LEARNED_NAMES_MAX, ProbeError, Probes
from exporter.runtime import tune_gc
from exporter.source.live import LiveSource

log = logging.getLogger("provex.agent")

SWEEP_INTERVAL_S = 30.0
FLOOD_REPORT_S = 1.0  # how often flooding containers are named (one line each per interval)
SHUTDOWN_DRAINS = 64  # orphaned enter records are rare; a slow sweep is enough

BATCH_SIZE = Gauge(
    "provex_batch_events", "Events in the last batch drained from the ring buffer", registry=REGISTRY
)


class HostMountPrefixes:
    """Widen the kernel's open-path filter to each container's host mounts as
    enrichment learns them: a read through a hostPath mounted at /data must
    cross even though /data is no default prefix. Where a mount reaches a
    sensitive host path (probes.sensitive_paths), its path in the container is
    marked sensitive too, so a flood cannot sample a read of it away."""

    def __init__(self, probes: Probes) -> None:
        self.probes = probes
        self.known: set[str] = set()

    def __call__(self, event: Event) -> None:
        if event.container is None or not event.container.host_mounts:
            return
        for mount in event.container.host_mounts:
            prefix = mount.container_path.rstrip("/") + "/"
            if prefix in self.known:
                continue
            self.known.add(prefix)
            self.probes.add_path_prefix(prefix)
            for path in sensitive_in_mount(
                mount.host_path, mount.container_path, self.probes.config.sensitive_paths
            ):
                self.probes.add_path_prefix(path, sensitive=True)


def sensitive_in_mount(host: str, container: str, sensitive: list[str]) -> list[str]:
    """The container paths through which a host mount (host -> container) reaches the
    sensitive host paths: hostPath / at /host reaches /etc/shadow as /host/etc/shadow;
    hostPath /root/.ssh at /keys is sensitive as a whole."""
    host = host.rstrip("/") + "/"
    container = container.rstrip("/")
    out = []
    for path in sensitive:
        if path.startswith(host):
            out.append(container + "/" + path[len(host) :])
        elif host.startswith(path):
            out.append(container + "/")
    return out


class LearnedNames:
    """Keep the names the workload wrote, linked or renamed in the kernel's path filter,
    bounded: the kernel adds each one spelled absolutely (bpf/provex.h: learn_name); this
    adds the relatively spelled ones (resolved by the graph) and forgets the oldest past
    LEARNED_NAMES_MAX, so the trie never fills."""

    def __init__(self, probes: Probes, limit: int = LEARNED_NAMES_MAX) -> None:
        self.probes = probes
        self.limit = limit
        self.names: OrderedDict[str, None] = OrderedDict()

    def __call__(self, event: Event) -> None:
        t = event.type
        if t is EventType.OPEN:
            if event.ret < 0 or not event.flags & WRITE_FLAGS:
                return
        elif t not in (EventType.LINK, EventType.RENAME) or event.ret != 0:
            return
        name = event.path
        if not name.startswith("/"):
            name = event.resolved_path
            if not name:
                return
            self.probes.learn_name(name)
        names = self.names
        names[name] = None
        names.move_to_end(name)
        while len(names) > self.limit:
            old, _ = names.popitem(last=False)
            self.probes.forget_name(old)


def watch_dependencies(state: HealthState, stages: Stages) -> None:
    """What /readyz reports as degraded: the API server's Pod watch, and the output (the
    collector, or the file) whatever the sink's shape."""
    enricher = stages.enricher
    if enricher is not None and enricher.pods is not None:
        state.dependencies["apiserver"] = lambda: (
            None if enricher.k8s_ready() else "no Pod watch: events carry container ids only"
        )
    state.dependencies[stages.sink.dependency] = stages.sink.degraded


def _releasers(probes: Probes, stages: Stages) -> list:
    """What lets go of a gone container: its provenance state, enrichment's caches of its
    cgroup, the kernel's per-cgroup entries (its registered identities go at once: tell)."""
    out = [lambda cgroup_id, _cid: probes.forget_cgroup(cgroup_id)]
    correlator = stages.pipeline.correlator
    if correlator is not None:
        out.append(lambda _cgroup_id, cid: correlator.graph.forget_container(cid) if cid else None)
    if stages.enricher is not None:
        out.append(lambda cgroup_id, _cid: stages.enricher.forget_cgroup(cgroup_id))
    return out


class StartFailed(Exception):
    """The agent could not start; `exit_code` says why (1 the probes, 2 bad input)."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


class Agent:
    """`provex run` and `provex record` as a daemon in named steps: `start` (signals, the
    health server, the probes, the stages, the source), `run` (the loop, then what the kernel
    still holds), `stop` (the one shutdown path: releases what `start` acquired, in reverse,
    whether the run ended, failed to start or raised). Signal handlers only queue; the loop
    acts on them."""

    def __init__(self, args: argparse.Namespace, config: Config, ruleset: Any = None) -> None:
        self.args = args
        self.config = config
        self.ruleset = ruleset
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.state = HealthState(config.server.stall_after_s)
        self.ledger = Ledger()  # what this run loses, by cause: said at exit, and in the exit code
        self.server: Any = None
        self.probes: Probes | None = None
        self.stages: Stages | None = None
        self.source: LiveSource | None = None

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Acquire everything the loop needs; StartFailed (logged) when something cannot start."""
        self._handle_signals()
        self._serve_health()
        probes = self._attach_probes()
        identities = self._identities(probes)
        stages = self._build_stages(identities)
        self._wire(probes, stages, identities)

    def _handle_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        # Set before the probes compile: SIGHUP's default action would end the agent.
        signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())

    def _serve_health(self) -> None:
        if not self.config.server.health_addr:
            return
        try:
            self.server = serve(self.config.server, self.state)
        except (OSError, ValueError) as exc:
            log.error(
                "cannot serve /healthz, /readyz, /metrics",
                extra={"fields": {"addr": self.config.server.health_addr, "error": str(exc)}},
            )
            raise StartFailed(2) from None

    def _attach_probes(self) -> Probes:
        try:
            self.probes = Probes(self.config.probes)
        except (ProbeError, FileNotFoundError, PermissionError) as exc:
            log.error("cannot start the probes", extra={"fields": {"error": str(exc)}})
            raise StartFailed(1) from None
        probe_metrics.register(self.probes)
        return self.probes

    def _identities(self, probes: Probes) -> IdentityRegistry | None:
        """What files are, by identity: the sensitive set and the runtime, kept in the kernel."""
        if not probes.file_identity:
            return None
        config = self.config.probes
        return IdentityRegistry(
            probes, config.sensitive_paths, config.runtime_binaries, host_root=config.host_root
        )

    def _build_stages(self, identities: IdentityRegistry | None) -> Stages:
        try:
            if self.args.command == "record":  # raw, enriched events: the replay format
                sink = JsonLinesSink(self.args.output, alerts=False)
                self.stages = build_stages(
                    self.config, enrich=True, correlate=False, sink=sink, identities=identities
                )
            else:
                self.stages = build_stages(
                    self.config,
                    enrich=True,
                    correlate=True,
                    raw_events_wait=True,
                    identities=identities,
                    ruleset=self.ruleset,
                )
        except (StartupError, OutputFileError) as exc:
            log.error("cannot start", extra={"fields": {"error": str(exc)}})
            raise StartFailed(2) from None
        return self.stages

    def _wire(self, probes: Probes, stages: Stages, identities: IdentityRegistry | None) -> None:
        config, enricher = self.config, stages.enricher
        watch_dependencies(self.state, stages)
        pipeline = self.pipeline = stages.pipeline
        pipeline.observers.append(HostMountPrefixes(probes))
        if config.probes.open_path_prefixes:
            pipeline.observers.append(LearnedNames(probes))
        # The kernel reports each new cgroup before its first event: teach enrichment its path;
        # and each removed one: what is kept of its container goes after a grace.
        learn = enricher.cgroups.remember if enricher is not None else None
        identify = enricher.identity if enricher is not None else (lambda _cgroup: None)
        # Its registered secrets name nothing from the moment its cgroup goes (their inode numbers
        # may be the next container's); the rest is released after the grace.
        tell = [identities.container_gone] if identities is not None else []
        self.reaper = ContainerReaper(identify, _releasers(probes, stages), tell=tell)
        self.source = LiveSource(
            probes,
            on_cgroup=learn,
            on_cgroup_gone=lambda cgroup_id: self.reaper.cgroup_gone(cgroup_id, time.time_ns()),
        )
        self.kernel_losses = KernelLossReporter(probes.counters)  # logged when they happen, once per interval
        correlator = self.correlator = pipeline.correlator if self.args.command == "run" else None
        self.reloader = (
            RuleReloader(config.correlate, correlator, self.reload_requested) if correlator else None
        )
        self.no_container = NoContainerHint(config.probes.monitor)
        self.floods = FloodReporter(probes.cgroup_stats, identify)
        self.pressure = Pressure(probes.set_pressure)

    # ------------------------------------------------------------------ run

    def run(self) -> None:
        """The loop until a signal, a closed output or --duration; then what the kernel
        queued before the stop still goes out (bounded: a flood may go on)."""
        # The consumer's thread raises alerts and the export thread sends them; each gets the
        # interpreter back within 0.2 ms of wanting it (Python's default is 5 ms). An export
        # call wants it several times (encode, gRPC's own Python): bench/alert_latency.py
        # --load 5000, two runs each, p95 13.1 / 11.1 ms at 1 ms and 12.1 / 10.5 ms at 0.2 ms.
        tune_gc(switch_interval_s=0.0002)
        self.state.ready.set()
        self._announce()
        duration = getattr(self.args, "duration", None)  # `provex record --duration`
        deadline = time.monotonic() + duration if duration else None
        self.next_sweep = time.monotonic() + SWEEP_INTERVAL_S
        self.next_report = time.monotonic() + FLOOD_REPORT_S
        while not self.stopping.is_set() and not OUTPUT_CLOSED.is_set():
            self._tick()
            if deadline is not None and time.monotonic() >= deadline:
                break
        self._drain_the_kernel()

    def _announce(self) -> None:
        """The start-up summary: what is monitored, with which rules."""
        correlator = self.correlator
        rules = alerting_rules(correlator.ruleset) if correlator else None
        digest = correlator.ruleset.digest if correlator else ""
        assert self.probes is not None
        fields = summary(self.config, self.probes.monitored_cgroups, rules, digest)
        log.info("agent running", extra={"fields": {"command": self.args.command, **fields}})

    def _tick(self) -> None:
        """One drain of the ring buffer through the pipeline, and the periodic chores."""
        source, pipeline, probes = self.source, self.pipeline, self.probes
        assert source is not None and probes is not None
        self.state.beat()
        batch = source.poll()
        self.no_container.poll(len(batch))
        if self.reloader is not None:
            self.reloader.tick()
        self.pressure.update(source.lag_ns)  # before the work: the kernel tightens at once
        BATCH_SIZE.set(len(batch))
        now = time.time_ns()
        if batch:
            pipeline.feed(batch, now)
        if not source.backlog:
            pipeline.tick(now)
            self.reaper.tick(now)
        self.kernel_losses.poll()
        mono = time.monotonic()
        if mono >= self.next_report:
            summaries = source.take_summaries()  # decisive floods: events of their own
            if summaries:
                pipeline.feed(summaries, time.time_ns())
            self.floods.report()
            self.next_report = mono + FLOOD_REPORT_S
        if mono >= self.next_sweep:
            probes.sweep_pending()
            probes.sweep_budgets()
            self.next_sweep = mono + SWEEP_INTERVAL_S

    def _drain_the_kernel(self) -> None:
        source, pipeline = self.source, self.pipeline
        assert source is not None
        for _ in range(SHUTDOWN_DRAINS):
            batch = source.poll(0)
            pipeline.feed(batch, time.time_ns())
            if not source.backlog:
                break
        pipeline.feed(source.take_summaries(), time.time_ns())
        self.floods.report(final=True)
        pipeline.finish()

    # ------------------------------------------------------------------ stop

    def stop(self) -> dict[str, int]:
        """The one shutdown path: release what `start` acquired, in reverse. What the run
        lost, by cause (empty when it never got as far as reading the kernel)."""
        self.state.ready.clear()
        lost: dict[str, int] = {}
        if self.stages is not None:
            self.stages.close()
        if self.source is not None and self.probes is not None:
            counters = self.probes.counters()
            self.kernel_losses.report()
            lost = self.ledger.lost()  # reads the kernel counters too: before probes.close()
            self.source.close()
            log.info(
                "agent stopped",
                extra={
                    "fields": {
                        "emitted": sum(v for (_, c), v in counters.items() if c == "emitted"),
                        "lost": sum(v for (_, c), v in counters.items() if c.startswith("lost")),
                    }
                },
            )
        if self.probes is not None:
            self.probes.close()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()  # the port is free again
        return lost


def run(args: argparse.Namespace, config: Config, ruleset: Any = None) -> int:
    agent = Agent(args, config, ruleset)
    try:
        agent.start()
        agent.run()
    except StartFailed as exc:
        return exc.exit_code  # after `stop` (finally), as every other way out
    finally:
        lost = agent.stop()
    return agent.ledger.finish(args.command, lost=lost)
