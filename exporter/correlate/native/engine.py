"""The correlator on the native core: the same surface and alerts as engine.Correlator.

Per event, Python only calls `Core.add` (which annotates the event, judges it and feeds
the correlations) and, when something matched, builds the alerts exactly as the reference
does (engine.Correlator._emit: evidence, stable ids, de-duplication). Metrics are counted in
the core and published here every few thousand events and at flush and drain.
"""

from __future__ import annotations

from prometheus_client import Counter

from exporter.config.schema import CorrelateConfig
from exporter.correlate import graph as reference_graph
from exporter.correlate.dedup import Deduplicator
from exporter.correlate.engine import EVENTS_SKIPPED, MATCHES, Correlator, _shape
from exporter.correlate.loader import RuleSet
from exporter.correlate.native import load
from exporter.correlate.native.ir import condition_ir
from exporter.correlate.sequence import STATE_EVICTIONS
from exporter.model import Alert, Event

PUBLISH_EVERY = 4096  # events between metric updates (the graph sweeps every 1,024 itself)


class NativeCorrelator(Correlator):
    """engine.Correlator with its per-event path in exporter/correlate/native/_core.pyx."""

    engine = "native"

    def __init__(self, ruleset: RuleSet, config: CorrelateConfig | None = None) -> None:
        config = config or CorrelateConfig()
        core = load()
        self._core = core.Core(config.window_s, config.max_nodes, config.max_edges)
        self.graph = self._core.graph  # size, evicted, ancestors, story: as the reference's
        self.dedup = Deduplicator(config.dedup_window_s)
        self.now_ns = 0
        self._matches: dict[str, object] = {}
        self._published: dict[tuple, int] = {}  # (metric, labels) -> the count published
        self._since_publish = 0
        self.ruleset = RuleSet([], [], [])
        self.use_rules(ruleset)

    def use_rules(self, ruleset: RuleSet) -> None:
        """As Correlator.use_rules: the graph and de-duplication stay, and so do the partial
        chains of a correlation whose shape did not change."""
        before = {c.uid: c for c in self.ruleset.correlations}
        groups = self._core.groups_of()
        kept = {
            corr.uid: groups[corr.uid]
            for corr in ruleset.correlations
            if corr.uid in before and _shape(before[corr.uid]) == _shape(corr)
        }
        self.ruleset = ruleset
        rules = [(rule, condition_ir(rule.condition)) for rule in ruleset.rules]
        self._core.use_rules(rules, list(ruleset.correlations), kept)

    def process(self, event: Event) -> list[Alert]:
        out: list[Alert] = []
        if event.ts_ns > self.now_ns:
            self.now_ns = event.ts_ns
            closed = self.dedup.close_until(event.ts_ns)
            if closed:
                out += self._told(closed)
        hits = self._core.add(event)
        if hits is not None:
            for rule, key, matches in hits:
                self._emit(rule, key, matches, out)
        self._since_publish += 1
        if self._since_publish >= PUBLISH_EVERY:
            self.publish()
        return out

    def flush(self, now_ns: int) -> list[Alert]:
        self.publish()
        return self._told(self.dedup.close_until(now_ns))

    def drain(self) -> list[Alert]:
        self.graph.publish()
        self.publish()
        return self._told(self.dedup.close_all())

    def publish(self) -> None:
        """The core's counts since the last call, into the reference's metrics."""
        self._since_publish = 0
        outcomes, evictions, rejudged = self.graph.counters()
        counts = self._core.counters()
        for outcome, n in outcomes.items():
            self._advance(reference_graph.RESOLUTIONS, (outcome,), n)
        for (kind, cause), n in evictions.items():
            self._advance(reference_graph.GRAPH_EVICTIONS, (kind, cause), n)
        self._advance(reference_graph.REJUDGED, (), rejudged)
        self._advance(EVENTS_SKIPPED, ("failed_syscall",), counts["skipped_failed"])
        for uid, n in [*counts["rule_matches"].items(), *counts["correlation_matches"].items()]:
            self._advance(MATCHES, (uid,), n)
        for cause, n in counts["state_evictions"].items():
            self._advance(STATE_EVICTIONS, (cause,), n)
        nodes, edges = self.graph.size
        reference_graph.GRAPH_NODES.set(nodes)
        reference_graph.GRAPH_EDGES.set(edges)

    def _advance(self, metric: Counter, labels: tuple[str, ...], total: int) -> None:
        key = (metric, labels)
        delta = total - self._published.get(key, 0)
        if delta > 0:
            (metric.labels(*labels) if labels else metric).inc(delta)
        self._published[key] = total
