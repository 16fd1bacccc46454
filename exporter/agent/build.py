"""Build the stages a command needs from the config, refusing bad parts up front."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from exporter.agent.pipeline import Pipeline, Sink
from exporter.config import Config

log = logging.getLogger("provex.agent")


class StartupError(RuntimeError):
    """A stage could not be built; the message says which and why."""


@dataclass
class Stages:
    pipeline: Pipeline
    sink: Sink
    enricher: Any = None
    closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for part in reversed(self.closers):
            part()


def build_stages(
    config: Config,
    *,
    enrich: bool,
    correlate: bool,
    sink: Sink | None = None,
    inherit_otlp_env: bool = True,
    raw_in_child: bool = False,
) -> Stages:
    """Enricher (started), correlator and sink for a command (`correlate=False`: the
    provenance graph without rules). `inherit_otlp_env`: may the OTLP endpoint come from
    OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT (not for a replay). `raw_in_child`: raw events to a
    collector go through a child process (the live agent: its alerts must not wait)."""
    from exporter.correlate.engine import Correlator, build_correlator
    from exporter.correlate.errors import RulesError
    from exporter.correlate.loader import RuleSet
    from exporter.emit.factory import build_sink
    from exporter.enrich.factory import build_enricher

    if correlate:
        try:
            correlator = build_correlator(config.correlate)
        except RulesError as exc:
            raise StartupError(str(exc)) from None
        _log_rule_notes(correlator.ruleset)
    else:
        # No rules, but the provenance graph still resolves every path: a recording carries
        # what the graph knew, and replaying it gives the same stream back.
        correlator = Correlator(RuleSet([], [], []), config.correlate)
    closers = []
    enricher = None
    if enrich:
        try:
            enricher = build_enricher(config.enrich)
        except ValueError as exc:  # KubeConfigError is a ValueError too
            raise StartupError(f"enrichment: {exc}") from None
        enricher.start()
        closers.append(enricher.stop)
    if sink is None:
        try:
            sink = build_sink(
                config.output,
                node_name=config.enrich.node_name,
                cluster_name=config.enrich.cluster_name,
                inherit_env=inherit_otlp_env,
                raw_in_child=raw_in_child,
                recorded=not enrich,  # a replay: events carry the node they were recorded on
            )
        except ValueError as exc:
            raise StartupError(f"output: {exc}") from None
    closers.insert(0, sink.close)  # closed last: what the others flush still goes out
    pipeline = Pipeline(sink, enricher=enricher, correlator=correlator, emit_events=config.output.raw_events)
    return Stages(pipeline, sink, enricher, closers)


def _log_rule_notes(ruleset: Any) -> None:
    """One line each for skipped rules and tag warnings, counted by cause
    (`provex rules lint` lists them one by one)."""
    for kind, items in (("rules skipped: not evaluable here", ruleset.skipped),
                        ("rule warnings", ruleset.warnings)):  # fmt: skip
        if items:
            causes: dict[str, int] = {}
            for item in items:
                causes[item.cause] = causes.get(item.cause, 0) + 1
            log.warning(
                kind,
                extra={"fields": {"count": len(items), "by_cause": causes, "first": str(items[0])}},
            )
