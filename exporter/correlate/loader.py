"""Load Sigma rule files, validate them with pySigma, compile them for the engine.

A rule set loads whole or not at all: every error of every file is collected
with its file:line and the set is refused (RulesError). A valid rule that
provex cannot evaluate (a logsource it does not produce, a field it has no
value for) is skipped, not refused, and listed in `RuleSet.skipped`; so is a
correlation over such a rule. A name close to one provex knows is taken for a
typo and refused with a suggestion. ATT&CK tags outside the Enterprise list
are warnings (`RuleSet.warnings`). `survey` reports, per cause, what of a
foreign corpus runs.

provex extensions are top-level `x-provex-*` keys (pySigma keeps them in
`custom_attributes`, so the files stay valid Sigma):
  single rules:  x-provex-include-failed: true   also match failed syscalls
                 x-provex-key: [Field, ...]      de-duplication key (default ContainerId)
  correlations:  x-provex-lineage: {mode: descendant | kin, depth: N}
                 x-provex-same: [{rule_a: FieldA, rule_b: FieldB}, ...]
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.correlations import SigmaCorrelationConditionOperator, SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from exporter.correlate.attack import techniques_and_tactics
from exporter.correlate.compile import (
    Predicate,
    Unsupported,
    check_field,
    compile_condition,
    condition_fields,
)
from exporter.correlate.errors import NotApplicable, RuleError, RulesError
from exporter.correlate.fields import CATEGORIES

DEFAULT_RULES_DIR = Path(__file__).resolve().parent / "rules"
_RULE_KEYS = {"x-provex-include-failed", "x-provex-key"}
_CORR_KEYS = {"x-provex-lineage", "x-provex-same"}
_COUNT_OPS = {
    SigmaCorrelationConditionOperator.GTE: ">=",
    SigmaCorrelationConditionOperator.GT: ">",
    SigmaCorrelationConditionOperator.EQ: "==",
}


@dataclass(eq=False)
class Rule:
    """A single-event rule, compiled."""

    uid: str
    name: str
    title: str
    level: str
    techniques: list[str]
    tactics: list[str]
    description: str
    category: str
    predicate: Predicate
    file: str
    line: int
    include_failed: bool = False
    key_fields: list[str] = field(default_factory=lambda: ["ContainerId"])
    generate: bool = True  # alerts on its own (false when only a correlation step)
    fields: frozenset[str] = frozenset()  # the fields its detection reads

    @property
    def reads_origin(self) -> bool:
        """Its detection asks the graph where an executed file came from: the alert then
        carries that story (connect, writes, reads) as evidence."""
        return "ExecutedFileFromNetwork" in self.fields


@dataclass(eq=False)
class Correlation:
    uid: str
    name: str
    title: str
    level: str
    techniques: list[str]
    tactics: list[str]
    description: str
    file: str
    line: int
    type: str  # event_count | value_count | temporal | temporal_ordered
    steps: list[Rule]
    group_by: list[str]
    aliases: dict[str, dict[str, str]]  # alias -> rule uid -> field
    timespan_ns: int
    op: str = ">="
    count: int = 1
    value_field: str = ""
    lineage_mode: str = ""  # "" | descendant | kin
    lineage_depth: int = 2
    same: list[dict[int, str]] = field(default_factory=list)  # step index -> field

    def field_for(self, name: str, rule: Rule) -> str:
        """A group-by name for one step: an alias resolves per rule."""
        alias = self.aliases.get(name)
        return alias.get(rule.uid, name) if alias else name


@dataclass
class RuleSet:
    rules: list[Rule]
    correlations: list[Correlation]
    files: list[str]
    skipped: list[RuleError] = field(default_factory=list)  # valid, but not evaluable here
    warnings: list[RuleError] = field(default_factory=list)  # loaded; worth a look (ATT&CK tags)


@dataclass
class _Doc:
    file: str
    index: int
    data: dict[str, Any]
    node: yaml.Node

    def line(self, *path: str) -> int:
        return _key_line(self.node, path)


# ---------------------------------------------------------------- files


def rule_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every .yml/.yaml under the given files and directories, sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(x for x in p.rglob("*") if x.suffix in (".yml", ".yaml") and x.is_file())
        else:
            found.append(p)
    return found


def _read_docs(path: Path, errors: list[RuleError]) -> list[_Doc]:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        errors.append(RuleError(name, 0, f"cannot read: {exc.strerror or exc}", "io"))
        return []
    except UnicodeDecodeError as exc:
        errors.append(RuleError(name, 0, f"not UTF-8: {exc}", "io"))
        return []
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        datas = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        errors.append(RuleError(name, line, f"not valid YAML: {getattr(exc, 'problem', exc)}", "yaml"))
        return []
    docs = []
    for index, (node, data) in enumerate(zip(nodes, datas, strict=True)):
        if data is None:
            continue
        if not isinstance(data, dict):
            line = node.start_mark.line + 1
            errors.append(RuleError(name, line, "a rule must be a YAML mapping", "yaml"))
            continue
        docs.append(_Doc(name, index, data, node))
    return docs


def _key_line(node: yaml.Node, path: Iterable[str]) -> int:
    """1-based line of the deepest key of `path` found under `node`."""
    line = node.start_mark.line + 1
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                line, node = k.start_mark.line + 1, v
                break
        else:
            break
    return line


def _field_line(node: yaml.Node, name: str) -> int | None:
    """1-based line of the first key naming field `name` (any modifiers) under `node`."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value.split("|")[0] == name:
                return k.start_mark.line + 1
            found = _field_line(v, name)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _field_line(item, name)
            if found:
                return found
    return None


def _sigma_error_line(doc: _Doc, exc: Exception) -> int:
    kind = type(exc).__name__
    for word, path in (
        ("Timespan", ("correlation", "timespan")),
        ("CorrelationCondition", ("correlation", "condition")),
        ("CorrelationType", ("correlation", "type")),
        ("Correlation", ("correlation",)),
        ("Condition", ("detection", "condition")),
        ("Level", ("level",)),
        ("Identifier", ("id",)),
        ("Logsource", ("logsource",)),
        ("Tag", ("tags",)),
        ("Status", ("status",)),
        ("Date", ("date",)),
        ("Modified", ("modified",)),
        ("Title", ("title",)),
    ):
        if word in kind:
            return doc.line(*path)
    return doc.line("detection")


# ---------------------------------------------------------------- rules


def _meta(doc: _Doc, sigma: SigmaRule | SigmaCorrelationRule, warnings: list[RuleError]) -> dict[str, Any]:
    title = sigma.title or ""
    uid = str(sigma.id) if sigma.id else (sigma.name or "")
    if not uid:
        raise RuleError(doc.file, doc.line("title"), "a rule needs an `id` (or a `name`)", "invalid", title)
    tags = techniques_and_tactics([str(t) for t in sigma.tags])
    for message in tags.warnings:
        warnings.append(RuleError(doc.file, doc.line("tags"), message, "unknown_attack_tag", title))
    return {
        "uid": uid,
        "name": sigma.name or uid,
        "title": title,
        "level": sigma.level.name.lower() if sigma.level else "medium",
        "techniques": tags.techniques,
        "tactics": tags.tactics,
        "description": (sigma.description or "").strip(),
        "file": doc.file,
        "line": doc.node.start_mark.line + 1,
    }


def _check_extensions(doc: _Doc, allowed: set[str], title: str) -> None:
    for key in doc.data:
        if isinstance(key, str) and key.startswith("x-provex-") and key not in allowed:
            raise RuleError(
                doc.file,
                doc.line(key),
                f"unknown extension {key!r} (known: {sorted(allowed)})",
                "invalid",
                title,
            )


def _check_logsource(doc: _Doc, sigma: SigmaRule, title: str) -> str:
    """The rule's category; NotApplicable when provex does not produce its logsource,
    RuleError when the category looks like a misspelt one of provex's."""
    ls = sigma.logsource
    if not ls.service and ls.product in (None, "linux") and ls.category in CATEGORIES:
        return ls.category
    where = f"product={ls.product} service={ls.service} category={ls.category}"
    near = difflib.get_close_matches(ls.category or "", sorted(CATEGORIES), 1, 0.8)
    if near and not ls.service and ls.product in (None, "linux"):
        raise RuleError(
            doc.file,
            doc.line("logsource", "category"),
            f"unknown logsource category {ls.category!r}: did you mean {near[0]!r}?"
            f" (provex produces: {', '.join(sorted(CATEGORIES))})",
            "logsource_typo",
            title,
        )
    raise NotApplicable(
        doc.file,
        doc.line("logsource"),
        f"logsource not produced by provex ({where})",
        f"logsource:{ls.service or ls.category or 'product-only'}",
        title,
    )


def _compile_rule(doc: _Doc, warnings: list[RuleError]) -> Rule:
    sigma = SigmaRule.from_dict(doc.data, collect_errors=True)
    title = str(doc.data.get("title", ""))
    if sigma.errors:
        exc = sigma.errors[0]
        raise RuleError(doc.file, _sigma_error_line(doc, exc), f"invalid Sigma: {exc}", "sigma", title)
    meta = _meta(doc, sigma, warnings)
    _check_extensions(doc, _RULE_KEYS, title)
    category = _check_logsource(doc, sigma, title)
    try:
        conditions = sigma.detection.parsed_condition
        if len(conditions) != 1:
            raise Unsupported("condition", "exactly one condition is supported")
        parsed = conditions[0].parse()
        predicate = compile_condition(parsed, category)
        fields = condition_fields(parsed)
    except Unsupported as exc:
        line = _field_line(_sub(doc.node, "detection"), exc.field) if exc.field else None
        cause = f"{exc.cause}:{exc.field}" if exc.field else exc.cause
        # A field far from every provex field is one provex has no value for (a
        # community rule's DestinationHostname); a near miss is a typo.
        kind = NotApplicable if exc.cause == "unknown_field" and not exc.suggestion else RuleError
        raise kind(doc.file, line or doc.line("detection"), str(exc), cause, title) from exc
    except SigmaError as exc:
        raise RuleError(
            doc.file, _sigma_error_line(doc, exc), f"invalid Sigma: {exc}", "sigma", title
        ) from exc
    key_fields = doc.data.get("x-provex-key", ["ContainerId"])
    if not isinstance(key_fields, list) or not all(isinstance(k, str) for k in key_fields):
        raise RuleError(
            doc.file, doc.line("x-provex-key"), "x-provex-key must be a list of fields", "invalid", title
        )
    for name in key_fields:
        try:
            check_field(name, category)
        except Unsupported as exc:
            raise RuleError(doc.file, doc.line("x-provex-key"), str(exc), exc.cause, title) from exc
    include_failed = doc.data.get("x-provex-include-failed", False)
    if not isinstance(include_failed, bool):
        line = doc.line("x-provex-include-failed")
        raise RuleError(doc.file, line, "x-provex-include-failed must be true or false", "invalid", title)
    return Rule(
        **meta,
        category=category,
        predicate=predicate,
        include_failed=include_failed,
        key_fields=key_fields,
        fields=fields,
    )


def _sub(node: yaml.Node, key: str) -> yaml.Node:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return node


def _compile_correlation(
    doc: _Doc, by_ref: dict[str, Rule], skipped: dict[str, RuleError], warnings: list[RuleError]
) -> Correlation:
    sigma = SigmaCorrelationRule.from_dict(doc.data, collect_errors=True)
    title = str(doc.data.get("title", ""))
    if sigma.errors:
        exc = sigma.errors[0]
        raise RuleError(
            doc.file, _sigma_error_line(doc, exc), f"invalid Sigma correlation: {exc}", "sigma", title
        )
    meta = _meta(doc, sigma, warnings)
    _check_extensions(doc, _CORR_KEYS, title)

    def fail(message: str, *path: str, cause: str = "invalid") -> RuleError:
        return RuleError(doc.file, doc.line(*path), message, cause, title)

    ctype = sigma.type.name.lower()
    if ctype not in ("event_count", "value_count", "temporal", "temporal_ordered"):
        raise fail(
            f"correlation type {ctype} is not evaluated", "correlation", "type", cause="correlation_type"
        )
    steps: list[Rule] = []
    for ref in sigma.rules:
        rule = by_ref.get(str(ref.reference))
        if rule is None and str(ref.reference) in skipped:
            raise NotApplicable(
                doc.file,
                doc.line("correlation", "rules"),
                f"step {ref.reference!r} is skipped ({skipped[str(ref.reference)].message})",
                "skipped_step",
                title,
            )
        if rule is None:
            raise fail(
                f"correlation names rule {ref.reference!r}, which is not in the loaded rule set",
                "correlation",
                "rules",
                cause="missing_rule",
            )
        steps.append(rule)
    if sigma.timespan is None:
        raise fail("correlation needs a timespan", "correlation", cause="bad_timespan")
    aliases: dict[str, dict[str, str]] = {}
    if sigma.aliases is not None:
        for alias in sigma.aliases.aliases.values():
            mapping = {}
            for ref, fname in alias.mapping.items():
                rule = by_ref.get(str(ref.reference))
                if rule is None:
                    raise fail(
                        f"alias {alias.alias!r} names unknown rule {ref.reference!r}",
                        "correlation",
                        "aliases",
                    )
                mapping[rule.uid] = fname
            aliases[alias.alias] = mapping
    corr = Correlation(
        **meta,
        type=ctype,
        steps=steps,
        group_by=list(sigma.group_by or []),
        aliases=aliases,
        timespan_ns=int(sigma.timespan.seconds * 1_000_000_000),
    )
    for step in steps:
        for name in corr.group_by:
            _check_step_field(corr.field_for(name, step), step, fail, ("correlation", "group-by"))
    if ctype in ("event_count", "value_count"):
        cond = sigma.condition
        if cond is None or cond.op not in _COUNT_OPS:
            op = cond.op.name.lower() if cond else "none"
            raise fail(
                f"condition {op} needs the window to close;"
                " provex matches as events arrive (use gte, gt, eq)",
                "correlation",
                "condition",
                cause="correlation_condition",
            )
        corr.op, corr.count = _COUNT_OPS[cond.op], int(cond.count)
        if ctype == "value_count":
            if not cond.fieldref:
                raise fail("value_count needs condition.field", "correlation", "condition")
            corr.value_field = cond.fieldref
            for step in steps:
                _check_step_field(
                    corr.field_for(cond.fieldref, step), step, fail, ("correlation", "condition")
                )
    _compile_lineage(doc, corr, fail)
    _compile_same(doc, corr, by_ref, fail)
    return corr


def _check_step_field(name: str, step: Rule, fail: Any, path: tuple[str, ...]) -> None:
    try:
        check_field(name, step.category)
    except Unsupported as exc:
        raise fail(f"{exc} (step {step.name!r})", *path, cause=exc.cause) from exc


def _compile_lineage(doc: _Doc, corr: Correlation, fail: Any) -> None:
    spec = doc.data.get("x-provex-lineage")
    if spec is None:
        return
    if (
        not isinstance(spec, dict)
        or spec.get("mode") not in ("descendant", "kin")
        or set(spec) - {"mode", "depth"}
    ):
        raise fail("x-provex-lineage must be {mode: descendant | kin, depth: N}", "x-provex-lineage")
    depth = spec.get("depth", 2)
    if not isinstance(depth, int) or not 0 <= depth <= 16:
        raise fail("x-provex-lineage depth must be an integer 0..16", "x-provex-lineage")
    if corr.type not in ("temporal", "temporal_ordered"):
        raise fail("x-provex-lineage applies to temporal correlations", "x-provex-lineage")
    corr.lineage_mode, corr.lineage_depth = spec["mode"], depth


def _compile_same(doc: _Doc, corr: Correlation, by_ref: dict[str, Rule], fail: Any) -> None:
    spec = doc.data.get("x-provex-same")
    if spec is None:
        return
    if not isinstance(spec, list) or corr.type not in ("temporal", "temporal_ordered"):
        raise fail(
            "x-provex-same must be a list of {rule: Field} maps on a temporal correlation", "x-provex-same"
        )
    for item in spec:
        if not isinstance(item, dict) or len(item) < 2:
            raise fail("each x-provex-same entry maps two or more rules to a field", "x-provex-same")
        join: dict[int, str] = {}
        for ref, fname in item.items():
            rule = by_ref.get(str(ref))
            if rule is None or rule not in corr.steps:
                raise fail(
                    f"x-provex-same names {ref!r}, which is not a step of this correlation", "x-provex-same"
                )
            _check_step_field(str(fname), rule, fail, ("x-provex-same",))
            join[corr.steps.index(rule)] = str(fname)
        corr.same.append(join)


# ---------------------------------------------------------------- sets


def _compile_all(
    paths: Iterable[str | Path], disabled: Iterable[str] = ()
) -> tuple[RuleSet, list[RuleError]]:
    errors: list[RuleError] = []
    warnings: list[RuleError] = []
    skipped: dict[str, RuleError] = {}  # id and name of a skipped rule -> why
    files = rule_files(paths)
    docs = [d for f in files for d in _read_docs(f, errors)]
    rules: list[Rule] = []
    by_ref: dict[str, Rule] = {}
    corr_docs = []
    for doc in docs:
        if "correlation" in doc.data:
            corr_docs.append(doc)
            continue
        if "action" in doc.data:
            line = doc.line("action")
            errors.append(
                RuleError(doc.file, line, "rule collections (action:) are not supported", "collection")
            )
            continue
        mine: list[RuleError] = []  # warnings count only for rules that load
        try:
            rule = _compile_rule(doc, mine)
        except NotApplicable as exc:
            for ref in (doc.data.get("id"), doc.data.get("name")):
                if ref:
                    skipped[str(ref)] = exc
            skipped.setdefault(f"{exc.file}:{exc.line}", exc)
            continue
        except RuleError as exc:
            errors.append(exc)
            continue
        clash = next((by_ref[r] for r in (rule.uid, rule.name) if r in by_ref), None)
        if clash is not None:
            errors.append(
                RuleError(
                    doc.file,
                    doc.line("id"),
                    f"duplicate rule id or name (also {clash.file}:{clash.line})",
                    "duplicate",
                    rule.title,
                )
            )
            continue
        by_ref[rule.uid] = by_ref[rule.name] = rule
        rules.append(rule)
        warnings += mine
    correlations: list[Correlation] = []
    for doc in corr_docs:
        mine = []
        try:
            correlations.append(_compile_correlation(doc, by_ref, skipped, mine))
            warnings += mine
        except NotApplicable as exc:
            skipped.setdefault(f"{exc.file}:{exc.line}", exc)
        except RuleError as exc:
            errors.append(exc)
    referenced = {id(s) for c in correlations for s in c.steps}
    for rule in rules:
        rule.generate = id(rule) not in referenced
    unique_skipped = list({id(e): e for e in skipped.values()}.values())
    ruleset = RuleSet(rules, correlations, [str(f) for f in files], unique_skipped, warnings)
    unknown = [d for d in disabled if not _named(ruleset, d)]
    errors += [
        RuleError("correlate.disabled_rules", 0, f"no rule has id, name or title {d!r}", "config")
        for d in unknown
    ]
    return _without(ruleset, set(disabled)), errors


def _named(ruleset: RuleSet, name: str) -> bool:
    return any(name in (r.uid, r.name, r.title) for r in [*ruleset.rules, *ruleset.correlations])


def _without(ruleset: RuleSet, off: set[str]) -> RuleSet:
    """The set less disabled rules; a correlation with a disabled step is disabled too.
    Steps of a disabled correlation stay silent (they never alert alone)."""
    if not off:
        return ruleset
    corrs = [c for c in ruleset.correlations if not off & {c.uid, c.name, c.title}]
    corrs = [c for c in corrs if not any(off & {s.uid, s.name, s.title} for s in c.steps)]
    rules = [r for r in ruleset.rules if not off & {r.uid, r.name, r.title}]
    return RuleSet(rules, corrs, ruleset.files, ruleset.skipped, ruleset.warnings)


def load_rules(paths: Iterable[str | Path], *, disabled: Iterable[str] = ()) -> RuleSet:
    """Load and compile every rule under `paths`; refuse the whole set on any error.
    Rules provex cannot evaluate are skipped and listed in the result's `skipped`."""
    ruleset, errors = _compile_all(paths, disabled)
    if errors:
        raise RulesError(errors)
    return ruleset


@dataclass
class SurveyResult:
    files: int
    rules: int
    evaluable: list[str]
    not_evaluable: dict[str, list[str]]  # cause -> "file:line: message"
    ruleset: RuleSet  # the evaluable rules, compiled

    def summary(self) -> dict[str, Any]:
        unparsed = sum(len(v) for k, v in self.not_evaluable.items() if k in ("sigma", "yaml", "io"))
        return {
            "files": self.files,
            "rules": self.rules,
            "loaded": self.rules - unparsed,
            "evaluable": len(self.evaluable),
            "not_evaluable": sum(len(v) for v in self.not_evaluable.values()),
            "by_cause": {k: len(v) for k, v in sorted(self.not_evaluable.items())},
        }


def survey(paths: Iterable[str | Path]) -> SurveyResult:
    """What of a foreign corpus runs, what cannot and why: the run loader's own verdicts,
    without refusing the set for the rules it would refuse."""
    ruleset, errors = _compile_all(paths)
    bad: dict[str, list[str]] = {}
    for e in [*errors, *ruleset.skipped]:
        bad.setdefault(e.cause, []).append(str(e))
    good = [f"{r.file}:{r.line}" for r in ruleset.rules] + [
        f"{c.file}:{c.line}" for c in ruleset.correlations
    ]
    total = len(good) + len(errors) + len(ruleset.skipped)
    return SurveyResult(len(ruleset.files), total, good, bad, ruleset)
