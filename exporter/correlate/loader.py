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
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from sigma import exceptions as sigma_errors
from sigma.correlations import SigmaCorrelationConditionOperator, SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from exporter import yamlfile
from exporter.correlate.compile import (
    Predicate,
    Unsupported,
    check_field,
    compile_condition,
    condition_fields,
)
from exporter.correlate.errors import NotApplicable, RuleError, RulesError
from exporter.taxonomy.attack import techniques_and_tactics
from exporter.taxonomy.fields import CATEGORIES
from exporter.yamlfile import YamlDoc, YamlFileError

DEFAULT_RULES_DIR = Path(__file__).resolve().parent / "rules"
_COUNT_OPS = {
    SigmaCorrelationConditionOperator.GTE: ">=",
    SigmaCorrelationConditionOperator.GT: ">",
    SigmaCorrelationConditionOperator.EQ: "==",
}


@dataclass(eq=False)
class RuleMeta:
    """What every rule says about itself, and where it was read."""

    uid: str
    name: str
    title: str
    level: str
    techniques: list[str]
    tactics: list[str]
    description: str
    file: str
    line: int


@dataclass(eq=False)
class Rule(RuleMeta):
    """A single-event rule, compiled."""

    category: str
    predicate: Predicate
    include_failed: bool = False
    key_fields: list[str] = field(default_factory=lambda: ["ContainerId"])
    generate: bool = True  # alerts on its own (false when only a correlation step)
    fields: frozenset[str] = frozenset()  # the fields its detection reads
    condition: object = None  # pySigma's parsed condition (the native core compiles its own IR)

    @property
    def reads_origin(self) -> bool:
        """Its detection asks the graph where an executed file came from: the alert then
        carries that story (connect, writes, reads) as evidence."""
        return "ExecutedFileFromNetwork" in self.fields


@dataclass(eq=False)
class Correlation(RuleMeta):
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
    # What was loaded, in 16 hex digits: the files' bytes as read (in load order) and the
    # disabled rules. Alerts and provex_rules_info carry it; a reload changes it.
    digest: str = ""


# ---------------------------------------------------------------- files


def rule_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every .yml/.yaml under the given files and directories, sorted. Hidden names are
    skipped: a ConfigMap volume holds each file twice, as `x.yml` and in `..<timestamp>/`."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(
                x
                for x in p.rglob("*")
                if x.suffix in (".yml", ".yaml")
                and not any(part.startswith(".") for part in x.relative_to(p).parts)
                and x.is_file()
            )
        else:
            found.append(p)
    return found


def _read_docs(path: Path, errors: list[RuleError], digest: Any = None) -> list[YamlDoc]:
    name = str(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        errors.append(RuleError(name, 0, f"cannot read: {exc.strerror or exc}", "io"))
        return []
    except UnicodeDecodeError as exc:
        errors.append(RuleError(name, 0, f"not UTF-8: {exc}", "io"))
        return []
    if digest is not None:
        digest.update(hashlib.sha256(raw).digest())
    try:
        docs = yamlfile.parse(text, name)
    except YamlFileError as exc:
        errors.append(RuleError(name, exc.line, exc.problem, "yaml", column=exc.source.column))
        return []
    rules = []
    for doc in docs:
        if doc.data is None:
            continue
        if not isinstance(doc.data, dict):
            errors.append(RuleError(name, doc.start, "a rule must be a YAML mapping", "yaml"))
            continue
        rules.append(doc)
    return rules


def _field_line(doc: YamlDoc, name: str) -> int | None:
    """The line of the first detection key naming field `name` (with any modifiers)."""
    lines = [
        line
        for path, line in doc.lines.items()
        if len(path) > 1 and path[0] == "detection" and path[-1].split("|")[0] == name
    ]
    return min(lines, default=None)


# Where in a rule each kind of pySigma error points (the most derived class that is
# listed wins: a correlation's timespan error is also a correlation error).
_SIGMA_ERROR_KEYS: dict[type[SigmaError], tuple[str, ...]] = {
    sigma_errors.SigmaTimespanError: ("correlation", "timespan"),
    sigma_errors.SigmaCorrelationConditionError: ("correlation", "condition"),
    sigma_errors.SigmaCorrelationTypeError: ("correlation", "type"),
    sigma_errors.SigmaRuleNotFoundError: ("correlation", "rules"),
    sigma_errors.SigmaCorrelationRuleError: ("correlation",),
    sigma_errors.SigmaConditionError: ("detection", "condition"),
    sigma_errors.SigmaDetectionError: ("detection",),
    sigma_errors.SigmaLevelError: ("level",),
    sigma_errors.SigmaIdentifierError: ("id",),
    sigma_errors.SigmaLogsourceError: ("logsource",),
    sigma_errors.SigmaTagError: ("tags",),
    sigma_errors.SigmaStatusError: ("status",),
    sigma_errors.SigmaDateError: ("date",),
    sigma_errors.SigmaModifiedError: ("modified",),
    sigma_errors.SigmaTitleError: ("title",),
    sigma_errors.SigmaDescriptionError: ("description",),
    sigma_errors.SigmaAuthorError: ("author",),
    sigma_errors.SigmaReferencesError: ("references",),
    sigma_errors.SigmaFalsePositivesError: ("falsepositives",),
    sigma_errors.SigmaFieldsError: ("fields",),
}


def _sigma_error_line(doc: YamlDoc, exc: Exception) -> int:
    for cls in type(exc).__mro__:
        path = _SIGMA_ERROR_KEYS.get(cls)
        if path is not None:
            return doc.line(*path)
    return doc.line("detection")


# ---------------------------------------------------------------- rules


def _meta(doc: YamlDoc, sigma: SigmaRule | SigmaCorrelationRule, warnings: list[RuleError]) -> dict[str, Any]:
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
        "line": doc.start,
    }


class _RuleExtensions(
    msgspec.Struct,
    forbid_unknown_fields=True,
    rename={"include_failed": "x-provex-include-failed", "key": "x-provex-key"},
):
    include_failed: bool = False
    key: list[str] = msgspec.field(default_factory=lambda: ["ContainerId"])


class _Lineage(msgspec.Struct, forbid_unknown_fields=True):
    mode: Literal["descendant", "kin"]
    depth: Annotated[int, msgspec.Meta(ge=0, le=16)] = 2


class _CorrelationExtensions(
    msgspec.Struct,
    forbid_unknown_fields=True,
    rename={"lineage": "x-provex-lineage", "same": "x-provex-same"},
):
    lineage: _Lineage | None = None
    same: list[
        Annotated[dict[str, str], msgspec.Meta(min_length=2, description="a map of RULE: Field, two or more")]
    ] = []


def _extensions(doc: YamlDoc, tp: type[Any], title: str) -> Any:
    """The rule's `x-provex-*` keys as a `tp` (pySigma ignores them: provex checks them)."""
    given = {k: v for k, v in doc.data.items() if isinstance(k, str) and k.startswith("x-provex-")}
    try:
        return doc.convert(tp, data=given)
    except YamlFileError as exc:
        raise RuleError(doc.file, exc.line, exc.problem, "invalid", title, exc.source.column) from None


def _check_logsource(doc: YamlDoc, sigma: SigmaRule, title: str) -> str:
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


def _parse(cls: Any, doc: YamlDoc, title: str) -> Any:
    """pySigma's reading of a rule (SigmaRule or SigmaCorrelationRule), its first error refused
    at the key it is about."""
    what = "invalid Sigma correlation" if cls is SigmaCorrelationRule else "invalid Sigma"
    try:
        sigma = cls.from_dict(doc.data, collect_errors=True)
    except SigmaError as exc:
        raise RuleError(doc.file, _sigma_error_line(doc, exc), f"{what}: {exc}", "sigma", title) from exc
    except Exception as exc:
        # pySigma trips over some malformed values itself (pySigma 1.5: a list as `id` raises
        # AttributeError, an unknown correlation type UnboundLocalError): refuse the rule, do
        # not end the whole load.
        problem = f"{what}: pySigma cannot read this rule ({type(exc).__name__}: {exc})"
        raise RuleError(doc.file, doc.start, problem, "sigma", title) from exc
    if sigma.errors:
        exc = sigma.errors[0]
        raise RuleError(doc.file, _sigma_error_line(doc, exc), f"{what}: {exc}", "sigma", title)
    return sigma


def _compile_rule(doc: YamlDoc, warnings: list[RuleError]) -> Rule:
    title = str(doc.data.get("title", ""))
    sigma = _parse(SigmaRule, doc, title)
    meta = _meta(doc, sigma, warnings)
    ext = _extensions(doc, _RuleExtensions, title)
    category = _check_logsource(doc, sigma, title)
    try:
        conditions = sigma.detection.parsed_condition
        if len(conditions) != 1:
            raise Unsupported("condition", "exactly one condition is supported")
        parsed = conditions[0].parse()
        predicate = compile_condition(parsed, category)
        fields = condition_fields(parsed)
    except Unsupported as exc:
        line = _field_line(doc, exc.field) if exc.field else None
        cause = f"{exc.cause}:{exc.field}" if exc.field else exc.cause
        # A field far from every provex field is one provex has no value for (a
        # community rule's DestinationHostname); a near miss is a typo.
        kind = NotApplicable if exc.cause == "unknown_field" and not exc.suggestion else RuleError
        raise kind(doc.file, line or doc.line("detection"), str(exc), cause, title) from exc
    except SigmaError as exc:
        raise RuleError(
            doc.file, _sigma_error_line(doc, exc), f"invalid Sigma: {exc}", "sigma", title
        ) from exc
    for i, name in enumerate(ext.key):
        try:
            check_field(name, category)
        except Unsupported as exc:
            raise RuleError(doc.file, doc.line("x-provex-key", i), str(exc), exc.cause, title) from exc
    return Rule(
        **meta,
        category=category,
        predicate=predicate,
        include_failed=ext.include_failed,
        key_fields=ext.key,
        fields=fields,
        condition=parsed,
    )


def _compile_correlation(
    doc: YamlDoc, by_ref: dict[str, Rule], skipped: dict[str, RuleError], warnings: list[RuleError]
) -> Correlation:
    title = str(doc.data.get("title", ""))
    sigma = _parse(SigmaCorrelationRule, doc, title)
    meta = _meta(doc, sigma, warnings)
    ext = _extensions(doc, _CorrelationExtensions, title)

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
    if (ext.lineage or ext.same) and ctype not in ("temporal", "temporal_ordered"):
        key = "x-provex-lineage" if ext.lineage else "x-provex-same"
        raise fail(f"{key} applies to temporal correlations", key)
    if ext.lineage:
        corr.lineage_mode, corr.lineage_depth = ext.lineage.mode, ext.lineage.depth
    corr.same = [
        _compile_same(join, corr, by_ref, fail, ("x-provex-same", str(i))) for i, join in enumerate(ext.same)
    ]
    return corr


def _check_step_field(name: str, step: Rule, fail: Any, path: tuple[str, ...]) -> None:
    try:
        check_field(name, step.category)
    except Unsupported as exc:
        raise fail(f"{exc} (step {step.name!r})", *path, cause=exc.cause) from exc


def _compile_same(
    join: dict[str, str], corr: Correlation, by_ref: dict[str, Rule], fail: Any, at: tuple[str, ...]
) -> dict[int, str]:
    """One x-provex-same entry: step index -> the field that must hold the same value."""
    out: dict[int, str] = {}
    for ref, fname in join.items():
        rule = by_ref.get(ref)
        if rule is None or rule not in corr.steps:
            raise fail(f"x-provex-same names {ref!r}, which is not a step of this correlation", *at, ref)
        _check_step_field(fname, rule, fail, (*at, ref))
        out[corr.steps.index(rule)] = fname
    return out


# ---------------------------------------------------------------- sets


def _compile_all(
    paths: Iterable[str | Path], disabled: Iterable[str] = ()
) -> tuple[RuleSet, list[RuleError]]:
    errors: list[RuleError] = []
    warnings: list[RuleError] = []
    skipped: dict[str, RuleError] = {}  # id and name of a skipped rule -> why
    disabled = list(disabled)
    files = rule_files(paths)
    digest = hashlib.sha256()
    docs = [d for f in files for d in _read_docs(f, errors, digest)]
    digest.update("\0".join(sorted(disabled)).encode())
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
    ruleset = RuleSet(
        rules, correlations, [str(f) for f in files], unique_skipped, warnings, digest.hexdigest()[:16]
    )
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
    return RuleSet(rules, corrs, ruleset.files, ruleset.skipped, ruleset.warnings, ruleset.digest)


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
