"""The correlator: events in, alerts out, deterministically.

Each event is added to the provenance graph, dispatched by logsource category
to the compiled single-event rules, and every match feeds the correlations
that use that rule. Alerts pass de-duplication, which emits a first match at
once and folds later ones into a follow-up. All time is event time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Counter

from exporter.config.schema import CorrelateConfig
from exporter.correlate import graph as reference_graph
from exporter.correlate.dedup import Deduplicator
from exporter.correlate.errors import RuleError, RulesError
from exporter.correlate.graph import ProvenanceGraph
from exporter.correlate.ids import stable_id
from exporter.correlate.loader import DEFAULT_RULES_DIR, Correlation, Rule, RuleSet, load_rules
from exporter.correlate.native import load
from exporter.correlate.native.ir import condition_ir
from exporter.correlate.sequence import STATE_EVICTIONS, CorrelationState, Match
from exporter.correlate.story import build_story
from exporter.metrics import REGISTRY
from exporter.model import Alert, Event, EvidenceRef, evidence_ref
from exporter.taxonomy.fields import EventView, categories_of, succeeded, value_text

log = logging.getLogger("provex.correlate")

EVENTS_SKIPPED = Counter(
    "provex_correlate_events_skipped",
    "Events not matched against rules, by cause (failed_syscall: rules see successful calls only)",
    ["cause"],
    registry=REGISTRY,
)
MATCHES = Counter(
    "provex_correlate_matches", "Rule matches before de-duplication, by rule", ["rule"], registry=REGISTRY
)


class Correlator:
    """Events in, alerts out. `correlate.engine` picks the per-event path: the native core
    (exporter/correlate/native, a subclass) or this module's Python, the reference."""

    engine = "python"

    def __new__(cls, ruleset: RuleSet, config: CorrelateConfig | None = None) -> Correlator:
        if cls is Correlator and _native_wanted((config or CorrelateConfig()).engine):
            return super().__new__(NativeCorrelator)
        return super().__new__(cls)

    def __init__(self, ruleset: RuleSet, config: CorrelateConfig | None = None) -> None:
        config = config or CorrelateConfig()
        self.graph = ProvenanceGraph(config.window_s, config.max_nodes, config.max_edges)
        self.dedup = Deduplicator(config.dedup_window_s)
        self.now_ns = 0
        self._states: dict[str, list[CorrelationState]] = {}
        self.use_rules(ruleset)
        self._skipped_failed = EVENTS_SKIPPED.labels("failed_syscall")
        self._matches: dict[str, object] = {}  # rule uid -> its labelled counter (labels() costs per call)

    def use_rules(self, ruleset: RuleSet) -> None:
        """Evaluate `ruleset` from the next event on (a reload swaps it here). The provenance
        graph and de-duplication stay; so do the partial chains of a correlation whose shape
        (type, steps, grouping, window) did not change."""
        old = {state.corr.uid: state for states in self._states.values() for state in states}
        self.ruleset = ruleset
        self._dispatch: dict[str, list[Rule]] = {}
        for rule in ruleset.rules:
            self._dispatch.setdefault(rule.category, []).append(rule)
        self._states = {}
        for corr in ruleset.correlations:
            state = CorrelationState(corr, self.graph)
            kept = old.get(corr.uid)
            if kept is not None and _shape(kept.corr) == _shape(corr):
                state.groups = kept.groups
            for step in dict.fromkeys(corr.steps):  # each rule once, in order
                self._states.setdefault(step.uid, []).append(state)

    def process(self, event: Event) -> list[Alert]:
        out = self._closed_by(event.ts_ns)
        graph = self.graph
        graph.add(event)
        self._judge(event, out)
        if graph._rejudged:
            # Executions whose program's origin this event revealed (the pipe an interpreter
            # reads from is fed by a process that just connected out): judged again by the
            # rules that read the origin.
            for late in graph.take_rejudged():
                self._judge(late, out, origin_only=True)
        return out

    def _judge(self, event: Event, out: list[Alert], origin_only: bool = False) -> None:
        categories = categories_of(event)
        if not categories:
            return
        ok = succeeded(event)
        if not ok and not origin_only:
            self._skipped_failed.inc()
        view = EventView(event)
        for category in categories:
            for rule in self._dispatch.get(category, ()):
                if origin_only and not rule.reads_origin:
                    continue
                if (ok or rule.include_failed) and rule.predicate(view):
                    self._matched(rule, event, view, out)

    def _matched(self, rule: Rule, event: Event, view: EventView, out: list[Alert]) -> None:
        self._match_counter(rule.uid).inc()
        if rule.generate:
            key = {name: value_text(view.get(name)) for name in rule.key_fields}
            self._emit(rule, key, [Match(event.ts_ns, event, 0, {})], out)
        for state in self._states.get(rule.uid, ()):
            for chain in state.feed(rule, event, view):
                self._match_counter(state.corr.uid).inc()
                self._emit(state.corr, chain.key, chain.matches, out)

    def _match_counter(self, uid: str):
        counter = self._matches.get(uid)
        if counter is None:
            counter = self._matches[uid] = MATCHES.labels(uid)
        return counter

    def _emit(
        self,
        rule: Rule | Correlation,
        key: dict[str, str],
        matches: list[Match],
        out: list[Alert],
    ) -> None:
        steps = rule.steps if isinstance(rule, Correlation) else [rule]
        evidence: list[EvidenceRef] = []
        seen: set[str] = set()
        for m in matches:
            step = steps[m.step] if m.step < len(steps) else rule
            # The graph's story of the file first (oldest first), then the matching event.
            story = m.event.origin if isinstance(step, Rule) and step.reads_origin else []
            for ref in [*story, evidence_ref(m.event, step.name)]:
                if ref.id not in seen:
                    seen.add(ref.id)
                    evidence.append(ref)
        decisive = _decisive(matches)
        alert = Alert(
            id=stable_id(rule.uid, *(f"{k}={v}" for k, v in sorted(key.items())), *(e.id for e in evidence)),
            rule_id=rule.uid,
            rule_title=rule.title,
            level=rule.level,
            techniques=list(rule.techniques),
            tactics=list(rule.tactics),
            description=rule.description,
            key=key,
            first_ts_ns=min(ref.ts_ns for ref in evidence),
            decisive_ts_ns=decisive.ts,
            evidence=evidence,
            event=decisive.event,
            rules_digest=self.ruleset.digest,
        )
        first = self.dedup.offer(alert, self.now_ns)
        if first is not None:
            out += self._told([first])

    def _closed_by(self, ts_ns: int) -> list[Alert]:
        """An event's time moves the clock: the follow-ups of the de-duplication windows that
        closed by then, told (a new list: the event's own alerts are added to it)."""
        if ts_ns <= self.now_ns:
            return []
        self.now_ns = ts_ns
        closed = self.dedup.close_until(ts_ns)
        return self._told(closed) if closed else closed

    def _told(self, alerts: list[Alert]) -> list[Alert]:
        """Alerts going out, each with its story as the graph tells it now (a folded match
        gets none: its follow-up is told when its window closes)."""
        for alert in alerts:
            alert.story = build_story(self.graph, alert.evidence)
        return alerts

    def flush(self, now_ns: int) -> list[Alert]:
        """Follow-ups of de-duplication windows that closed by now_ns (call periodically)."""
        return self._told(self.dedup.close_until(now_ns))

    def drain(self) -> list[Alert]:
        """End of stream / shutdown: close every window, return all pending follow-ups."""
        self.graph.publish()
        return self._told(self.dedup.close_all())


_fallback_logged = False


def engine_problem(config: CorrelateConfig) -> str | None:
    """Why `correlate.engine` cannot be had here (native without a usable core), or None:
    checked with the other inputs before anything starts."""
    if config.engine != "native":
        return None
    from exporter.correlate.native import NativeUnavailable, load

    try:
        load()
    except NativeUnavailable as exc:
        return str(exc)
    return None


def _native_wanted(engine: str) -> bool:
    """correlate.engine: "native" must have the core (NativeUnavailable says why not); "auto"
    takes it when it is built and says once when it is not."""
    global _fallback_logged
    if engine == "python":
        return False
    from exporter.correlate.native import NativeUnavailable, load

    try:
        load()
    except NativeUnavailable as exc:
        if engine == "native":
            raise
        if not _fallback_logged:
            _fallback_logged = True
            log.warning("correlating in Python", extra={"fields": {"reason": str(exc)}})
        return False
    return True


def _shape(corr: Correlation) -> tuple:
    """What a correlation's partial chains depend on: kept across a reload when equal."""
    return (
        corr.type,
        [step.uid for step in corr.steps],
        corr.group_by,
        corr.aliases,
        corr.timespan_ns,
        corr.op,
        corr.count,
        corr.value_field,
        corr.lineage_mode,
        corr.lineage_depth,
        corr.same,
    )


def _decisive(matches: list[Match]) -> Match:
    # The completing event is the newest (the one whose arrival made the match).
    return max(matches, key=lambda m: m.ts)


def rule_paths(config: CorrelateConfig) -> list[Path | str]:
    paths: list[Path | str] = [DEFAULT_RULES_DIR] if config.default_rules else []
    return paths + list(config.rules_dirs)


def build_correlator(config: CorrelateConfig, extra_paths: Iterable[str | Path] = ()) -> Correlator:
    """The correlator for a config: default rules (unless disabled) plus correlate.rules_dirs.
    Raises RulesError as `configured_rules` does."""
    return Correlator(configured_rules(config, extra_paths), config)


def configured_rules(config: CorrelateConfig, extra_paths: Iterable[str | Path] = ()) -> RuleSet:
    """The rule set a config names: default rules (unless disabled) plus correlate.rules_dirs.

    Raises RulesError (every problem with its file:line, nothing loaded) on a bad rule, a
    missing rules dir, an unknown name in disabled_rules, or a rule provex cannot evaluate
    unless correlate.skip_unsupported_rules (`--skip-unsupported-rules`) says to skip it.
    """
    paths = rule_paths(config) + list(extra_paths)
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise RulesError([RuleError(p, 0, "rules path does not exist", "io") for p in missing])
    ruleset = load_rules(paths, disabled=config.disabled_rules)
    if ruleset.skipped and not config.skip_unsupported_rules:
        raise RulesError([*ruleset.skipped, unsupported_summary(len(ruleset.skipped))])
    log.info(
        "rules loaded",
        extra={
            "fields": {
                "rules": len(ruleset.rules),
                "correlations": len(ruleset.correlations),
                "files": len(ruleset.files),
                "disabled": list(config.disabled_rules),
                "digest": ruleset.digest,
            }
        },
    )
    return ruleset


def unsupported_summary(count: int) -> RuleError:
    """The line after the rules provex cannot evaluate: how to start without them."""
    return RuleError(
        "",
        0,
        f"{count} rule(s) above cannot run here; to start without them, pass --skip-unsupported-rules"
        " (correlate.skip_unsupported_rules: true)",
        "unsupported",
    )


# ---------------------------------------------------------------- the native engine
# The correlator on the native core: the same surface and alerts as engine.Correlator.
#
# Per event, Python only calls `Core.add` (which annotates the event, judges it and feeds
# the correlations) and, when something matched, builds the alerts exactly as the reference
# does (engine.Correlator._emit: evidence, stable ids, de-duplication). Metrics are counted in
# the core and published here every few thousand events and at flush and drain.

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
        out = self._closed_by(event.ts_ns)
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
