"""Build the stages a command needs from the config, refusing bad parts up front."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.agent.pipeline import Pipeline, Sink
from exporter.config import Config
from exporter.errors import InputError, raise_all

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
    raw_events_wait: bool = False,
    identities: Any = None,
    ruleset: Any = None,
) -> Stages:
    """Enricher (started), correlator and sink for a command (`correlate=False`: the
    provenance graph without rules). `inherit_otlp_env`: may the OTLP endpoint come from
    OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT (not for a replay). `raw_events_wait`: raw events are
    mapped and encoded only while the pipeline is idle (the live agent: alerts go first; a
    replay feeds one long batch). `identities`: the registry of sensitive and runtime
    identities the live agent keeps in the kernel (exporter.enrich.identity), started and
    stopped with enrichment. `ruleset`: the rules `preflight` loaded (else they are loaded
    here)."""
    from exporter.correlate.engine import Correlator, build_correlator
    from exporter.correlate.errors import RulesError
    from exporter.correlate.loader import RuleSet
    from exporter.emit.factory import build_sink
    from exporter.enrich.factory import build_enricher

    if correlate:
        try:
            correlator = (
                build_correlator(config.correlate)
                if ruleset is None
                else Correlator(ruleset, config.correlate)
            )
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
            enricher = build_enricher(config.enrich, identities=identities)
        except ValueError as exc:  # KubeConfigError is a ValueError too
            raise StartupError(f"enrichment: {exc}") from None
        enricher.start()
        closers.append(enricher.stop)
    idle = threading.Event() if raw_events_wait else None
    if idle is not None:
        idle.set()
    if sink is None:
        try:
            sink = build_sink(
                config.output,
                node_name=config.enrich.node_name,
                cluster_name=config.enrich.cluster_name,
                inherit_env=inherit_otlp_env,
                consumer_idle=idle,
                recorded=not enrich,  # a replay: events carry the node they were recorded on
            )
        except ValueError as exc:
            raise StartupError(f"output: {exc}") from None
    closers.insert(0, sink.close)  # closed last: what the others flush still goes out
    pipeline = Pipeline(
        sink, enricher=enricher, correlator=correlator, emit_events=config.output.raw_events, idle=idle
    )
    return Stages(pipeline, sink, enricher, closers)


def _log_rule_notes(ruleset: Any) -> None:
    """One line each for skipped rules (--skip-unsupported-rules) and tag warnings, naming
    every one (`provex rules lint` says the same)."""
    for kind, items in (("rules skipped: not evaluable here", ruleset.skipped),
                        ("rule warnings", ruleset.warnings)):  # fmt: skip
        if items:
            log.warning(kind, extra={"fields": {"count": len(items), "rules": [str(i) for i in items]}})


def preflight(
    config: Config,
    command: str,
    *,
    labels: Mapping[tuple[str, ...], str] | None = None,
    output: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """Check every input of `command` before anything starts (no probe, thread or file
    yet): the OTEL_* variables the SDK will read, the files the config names, the output
    file, the kubeconfig and the rules. Raises InputErrors with every problem found;
    returns the rule set it loaded (run, replay), for build_stages.
    `labels`: how the user typed each config key; `output`: the file to write."""
    from exporter.config.otelenv import file_problem, otel_problems
    from exporter.correlate.engine import configured_rules, engine_problem
    from exporter.correlate.errors import RulesError
    from exporter.emit.native import encoder_problem
    from exporter.enrich.kubeclient import KubeConfigError, check_auth
    from exporter.probes.bpfsys import machine_problem

    environ = os.environ if environ is None else environ
    labels = labels or {}
    errors: list[InputError] = []

    def named(key: tuple[str, ...]) -> str:
        return labels.get(key, ".".join(key))

    out, server = config.output, config.server
    if command != "record" and out.schema in ("ecs", "ocsf"):
        errors += otel_problems(environ, out.otlp)
    files = [
        (("output", "otlp", key), getattr(out.otlp, key))
        for key in ("certificate", "client_key", "client_certificate")
    ]
    if command != "replay":
        files += [
            (("server", key), getattr(server, key))
            for key in ("tls_cert_file", "tls_key_file", "metrics_token_file")
        ]
    for key, path in files:
        problem = file_problem(path) if path else None
        if problem:
            errors.append(InputError(problem, f"{named(key)} {path}", "expected a readable file"))
    if output and output != "-":
        problem = output_problem(output)
        if problem:
            where = f"{'--output' if command == 'record' else named(('output', 'file'))} {output}"
            errors.append(InputError(problem, where, "expected a file path in a writable directory"))
    if command in ("run", "record"):
        problem = machine_problem()
        if problem:
            errors.append(InputError(problem, "provex " + command, "run it on x86_64 (replay runs anywhere)"))
    if command in ("run", "record") and config.enrich.kubernetes:
        path = config.enrich.kubeconfig
        problem = file_problem(path) if path else None
        if problem:
            errors.append(
                InputError(problem, f"{named(('enrich', 'kubeconfig'))} {path}", "expected a kubeconfig file")
            )
        else:
            try:
                check_auth(path, environ)
            except KubeConfigError as exc:
                errors.append(exc)
    ruleset = None
    if command in ("run", "replay"):
        try:
            ruleset = configured_rules(config.correlate)
        except RulesError as exc:
            errors += exc.errors
        problem = engine_problem(config.correlate)
        if problem:
            errors.append(InputError(problem, f"{named(('correlate', 'engine'))} native"))
    if command in ("run", "replay") and out.encoder == "native":
        problem = encoder_problem()
        if problem:
            errors.append(InputError(problem, f"{named(('output', 'encoder'))} native"))
    raise_all(errors)
    return ruleset


def output_problem(path: str) -> str | None:
    """Why an output file cannot be written, or None."""
    target = Path(path)
    if target.is_dir():
        return "is a directory"
    if not target.parent.is_dir():
        return f"directory {target.parent} does not exist"
    if not os.access(target if target.exists() else target.parent, os.W_OK):
        return "cannot be written"
    return None
