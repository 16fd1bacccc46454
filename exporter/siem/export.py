"""`provex rules export --target T`: provex's Sigma rules as SIEM-native queries.

Each rule file is loaded with pySigma (the same files the agent runs), passed
through the taxonomy pipeline (exporter.siem.pipeline) and one of pySigma's
backends (exporter.siem.backends). A rule the target cannot express exactly
is not exported: the output names it with the reason, so nothing weaker is
emitted silently. Rules that only feed a correlation (`generate: false`, the
default for referenced rules) appear inside their correlation, not alone.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from exporter.correlate.errors import RulesError
from exporter.correlate.loader import DEFAULT_RULES_DIR, load_rules, rule_files
from exporter.siem.backends import (
    ProvexEqlBackend,
    ProvexESQLBackend,
    ProvexLogQLBackend,
    ProvexSplunkBackend,
)
from exporter.siem.pipeline import build_pipeline


@dataclass(frozen=True)
class Target:
    name: str
    schema: str  # the documents the SIEM holds (mappings/<schema>.yaml)
    backend: Callable[..., Any]
    comment: str  # line-comment prefix of the output
    doc: str
    no_arrays: str = ""  # why the target cannot test array-valued fields
    array_suffix: str = ""  # how the target names an array field


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("elasticsearch-eql", "ecs", ProvexEqlBackend, "//", "Elasticsearch EQL over ECS documents"),
        Target(
            "esql",
            "ecs",
            ProvexESQLBackend,
            "//",
            "Elasticsearch ES|QL over ECS documents",
            "ES|QL compares a multi-valued field as null",
        ),
        Target("splunk", "ocsf", ProvexSplunkBackend, "```", "Splunk SPL over OCSF events (HEC)", "", "{}"),
        Target(
            "loki",
            "ecs",
            ProvexLogQLBackend,
            "#",
            "Loki LogQL alerting rules over the ECS log line",
            "Loki's json parser skips arrays",
        ),
    )
}

# provex's own Sigma extensions (exporter/correlate/loader.py) that no SIEM
# query language can express: the rule would match far more than provex does.
# (x-provex-lineage kin is exported: documents carry the lineage slots it reads.)
_UNEXPRESSIBLE = {
    "x-provex-same": "joins steps on the same value across different fields (e.g. the written file is the executed one)",
}


@dataclass(frozen=True)
class Exported:
    """One alerting rule: its query, or why it was not exported."""

    name: str
    uid: str
    title: str
    file: str
    level: str
    query: str | None  # the queries as one text (several: separated by a comment line)
    reason: str | None = None
    queries: tuple[str, ...] = ()  # each query on its own (a kin join is one per pair of slots)


def export(target: str, paths: Sequence[str | Path] = ()) -> list[Exported]:
    """Convert every alerting rule under `paths` (default: the shipped rules) for `target`.

    Raises ValueError for an unknown target and RulesError (every problem with
    its file:line) when the rules would not load in the agent."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}: expected one of {sorted(TARGETS)}")
    spec = TARGETS[target]
    paths = list(paths) or [DEFAULT_RULES_DIR]
    # Exactly what the agent would load: a bad rule is refused with file:line (RulesError).
    load_rules(paths)
    out: list[Exported] = []
    for path in rule_files(paths):
        out += _export_file(spec, Path(path))
    return out


def _export_file(spec: Target, path: Path) -> list[Exported]:
    rules = SigmaCollection.load_ruleset([path])
    pipeline = build_pipeline(spec.schema, spec.no_arrays, spec.array_suffix)
    backend = spec.backend(processing_pipeline=pipeline, collect_errors=True)
    fatal: BaseException | None = None
    try:
        backend.convert(rules, output_format="default")
    except (SigmaError, NotImplementedError) as exc:  # raised, not collected: a correlation
        fatal = exc
    errors: dict[int, BaseException] = {id(rule): exc for rule, exc in backend.errors}
    results: list[Exported] = []
    for rule in _alerting(rules):
        reason = _unexpressible(rule) or _failure(rule, errors) or (_reason(fatal) if fatal else None)
        queries = [] if reason else rule.get_conversion_result()
        if not reason and not queries:
            reason = "the backend produced no query"
        texts = tuple(str(q) for q in queries) if not reason else ()
        query = _joined(spec, texts) if texts else None
        results.append(Exported(**_meta(rule, path), query=query, reason=reason, queries=texts))
    return results


def _joined(spec: Target, queries: tuple[str, ...]) -> str:
    """Several queries of one rule (each a rule in the SIEM; together they are the rule)."""
    close = " ```" if spec.comment == "```" else ""
    return f"\n{spec.comment} or, as a query of its own:{close}\n".join(queries)


def _alerting(rules: SigmaCollection) -> list[SigmaRule | SigmaCorrelationRule]:
    """Correlations, and single rules that no correlation of the file refers to."""
    referenced = {
        id(ref.rule) for r in rules if isinstance(r, SigmaCorrelationRule) for ref in r.referenced_rules
    }
    return [r for r in rules if isinstance(r, SigmaCorrelationRule) or id(r) not in referenced]


def _failure(rule: SigmaRule | SigmaCorrelationRule, errors: dict[int, BaseException]) -> str | None:
    """Why `rule` (or a step it needs) did not convert."""
    if isinstance(rule, SigmaCorrelationRule):
        for ref in rule.referenced_rules:
            if id(ref.rule) in errors:
                return f"step {ref.rule.name or ref.rule.id}: {_reason(errors[id(ref.rule)])}"
    if id(rule) in errors:
        return _reason(errors[id(rule)])
    return None


def _meta(rule: SigmaRule | SigmaCorrelationRule, path: Path) -> dict[str, str]:
    return {
        "name": rule.name or str(rule.id),
        "uid": str(rule.id) if rule.id else "",
        "title": rule.title or "",
        "file": path.name,
        "level": rule.level.name.lower() if rule.level else "",
    }


def _unexpressible(rule: SigmaRule | SigmaCorrelationRule) -> str | None:
    if not isinstance(rule, SigmaCorrelationRule):
        return None
    for key, what in _UNEXPRESSIBLE.items():
        if key in rule.custom_attributes:
            return f"provex extension {key} {what}: the SIEM query would match far more than provex does"
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).split(" (while converting", 1)[0]
    return text.strip() or type(exc).__name__


def render(target: str, results: list[Exported]) -> str:
    """The export as one text: each rule as a comment header and its query, or why not.

    Loki: a ruler rule file (YAML) with one alerting rule per exported rule."""
    spec = TARGETS[target]
    if target == "loki":
        return _render_loki(spec, results)
    c = spec.comment
    close = " ```" if c == "```" else ""
    lines = [
        f"{c} provex rules for {spec.name}: {spec.doc} (fields: mappings/{spec.schema}.yaml){close}",
        f"{c} generated by `provex rules export --target {spec.name}`; do not edit{close}",
    ]
    for r in results:
        lines += ["", f"{c} {r.name} ({r.uid}) [{r.level}] {r.title} - {r.file}{close}"]
        if r.query is None:
            lines.append(f"{c} NOT EXPORTED: {r.reason}{close}")
        else:
            lines.append(r.query)
    return "\n".join(lines) + "\n"


# Alerts per Pod: Loki labels each stream by namespace and Pod (otel-collector/gateway-loki.yaml).
_LOKI_BY = "k8s_namespace_name, k8s_pod_name"
_METRIC_PREFIXES = ("sum", "count", "avg", "min", "max")


def _render_loki(spec: Target, results: list[Exported]) -> str:
    head = [
        f"# provex rules for {spec.name}: {spec.doc} (fields: mappings/{spec.schema}.yaml)",
        f"# generated by `provex rules export --target {spec.name}`; do not edit",
        "# Not exported (a weaker rule would be silently wrong):",
    ]
    head += [f"#   {r.name}: {r.reason}" for r in results if r.query is None]
    rules = []
    for r in results:
        if r.query is None:
            continue
        expr = r.query
        if not expr.lstrip().startswith(_METRIC_PREFIXES):
            expr = f"sum by ({_LOKI_BY}) (count_over_time({expr} [1m])) > 0"
        rules.append(
            {
                "alert": r.name,
                "expr": expr,
                "labels": {"severity": r.level, "provex_rule_id": r.uid},
                "annotations": {"summary": r.title, "description": f"provex rule {r.name} ({r.file})"},
            }
        )
    body = yaml.safe_dump({"groups": [{"name": "provex", "rules": rules}]}, sort_keys=False, width=1000)
    return "\n".join(head) + "\n" + body


def run(
    target: str, paths: Sequence[str | Path] = (), output: str | None = None, out: TextIO = sys.stdout
) -> int:
    """The CLI: print (or write) the export; 0 even when some rules are not exported,
    1 when a rule does not load (nothing written), 2 for a bad target or path."""
    if output:
        where = Path(output)
        problem = "is a directory" if where.is_dir() else ""
        if not problem and not where.parent.is_dir():
            problem = f"directory {where.parent} does not exist"
        if problem:
            print(f"ERROR -o {output}: {problem}; expected a file path", file=sys.stderr)
            return 2
    try:
        results = export(target, paths)
    except RulesError as exc:
        for err in exc.errors:
            print(f"ERROR {err}", file=sys.stderr)
        print(f"{len(exc.errors)} error(s); nothing exported", file=sys.stderr)
        return 1
    except (SigmaError, ValueError, OSError) as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 2
    text = render(target, results)
    if output:
        try:
            Path(output).write_text(text)
        except OSError as exc:
            print(f"ERROR -o {output}: cannot write: {exc.strerror}", file=sys.stderr)
            return 2
    else:
        out.write(text)
    skipped = [r for r in results if r.query is None]
    print(
        f"{len(results) - len(skipped)} exported, {len(skipped)} not exported (reasons inline)",
        file=sys.stderr,
    )
    return 0
