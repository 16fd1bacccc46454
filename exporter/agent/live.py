"""`provex run` and `provex record`: the live event loop.

One thread drains the ring buffer and runs the pipeline; nothing on it waits
on I/O (sinks queue, enrichment answers from cache). SIGTERM/SIGINT stop the
loop; the probes are detached and the output flushed before exit.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import threading
import time

from prometheus_client import Gauge

from exporter.agent.build import StartupError, build_stages
from exporter.agent.health import HealthState, serve
from exporter.agent.losses import KernelLossReporter, Ledger
from exporter.config import Config
from exporter.emit.jsonlines import JsonLinesSink, OutputError
from exporter.metrics import REGISTRY
from exporter.model import Event
from exporter.probes import metrics as probe_metrics
from exporter.probes.loader import ProbeError, Probes
from exporter.source.live import LiveSource

log = logging.getLogger("provex.agent")

SWEEP_INTERVAL_S = 30.0  # orphaned enter records are rare; a slow sweep is enough

BATCH_SIZE = Gauge(
    "provex_batch_events", "Events in the last batch drained from the ring buffer", registry=REGISTRY
)


class HostMountPrefixes:
    """Widen the kernel's open-path filter to each container's host mounts as
    enrichment learns them: a read through a hostPath mounted at /data must
    cross even though /data is no default prefix."""

    def __init__(self, probes: Probes) -> None:
        self.probes = probes
        self.known: set[str] = set()

    def __call__(self, event: Event) -> None:
        if event.container is None or not event.container.host_mounts:
            return
        for mount in event.container.host_mounts:
            prefix = mount.container_path.rstrip("/") + "/"
            if prefix not in self.known:
                self.known.add(prefix)
                self.probes.add_path_prefix(prefix)


def tune_gc() -> None:
    """Keep collector pauses off the alert path: what start-up built (BCC, compiled rules,
    the process table from /proc) is frozen out of every collection, and the young
    generation is collected less often. A full collection over a large provenance graph
    held alerts for hundreds of ms (bench/eval.py: p95 333 ms with the defaults)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20000, 50, 50)


def run(args: argparse.Namespace, config: Config) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    state = HealthState()
    server = serve(config.server.health_addr, state) if config.server.health_addr else None
    try:
        probes = Probes(config.probes)
    except (ProbeError, FileNotFoundError, PermissionError) as exc:
        log.error("cannot start the probes", extra={"fields": {"error": str(exc)}})
        return 1
    probe_metrics.register(probes)
    ledger = Ledger()  # what this run loses, by cause: said at exit, and in the exit code

    try:
        if args.command == "record":  # raw, enriched events: the replay format
            stages = build_stages(
                config, enrich=True, correlate=False, sink=JsonLinesSink(args.output, alerts=False)
            )
        else:
            stages = build_stages(config, enrich=True, correlate=True)
    except (StartupError, OutputError) as exc:
        log.error("cannot start", extra={"fields": {"error": str(exc)}})
        probes.close()
        return 2
    pipeline = stages.pipeline
    pipeline.observers.append(HostMountPrefixes(probes))
    # The kernel reports each new cgroup before its first event: teach enrichment its path.
    learn = stages.enricher.cgroups.remember if stages.enricher is not None else None
    source = LiveSource(probes, on_cgroup=learn)
    tune_gc()
    state.ready.set()
    deadline = time.monotonic() + args.duration if getattr(args, "duration", None) else None
    next_sweep = time.monotonic() + SWEEP_INTERVAL_S
    kernel_losses = KernelLossReporter(probes.counters)  # logged when they happen, once per interval
    log.info("agent running", extra={"fields": {"command": args.command}})
    try:
        while not stop.is_set():
            batch = source.poll()
            BATCH_SIZE.set(len(batch))
            now = time.time_ns()
            if batch:
                pipeline.feed(batch, now)
            else:
                pipeline.tick(now)
            kernel_losses.poll()
            if time.monotonic() >= next_sweep:
                probes.sweep_pending()
                next_sweep = time.monotonic() + SWEEP_INTERVAL_S
            if deadline is not None and time.monotonic() >= deadline:
                break
        # What the kernel queued before we stopped still goes out.
        pipeline.feed(source.poll(0), time.time_ns())
        pipeline.finish()
    finally:
        state.ready.clear()
        stages.close()
        counters = probes.counters()
        kernel_losses.report()
        lost = ledger.lost()  # reads the kernel counters too: before probes.close()
        probes.close()
        if server is not None:
            server.shutdown()
        log.info(
            "agent stopped",
            extra={
                "fields": {
                    "emitted": sum(v for (_, c), v in counters.items() if c == "emitted"),
                    "lost": sum(v for (_, c), v in counters.items() if c.startswith("lost")),
                }
            },
        )
    return ledger.finish(args.command, lost=lost)
