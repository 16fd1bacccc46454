"""pySigma's own backends, with the few corrections provex's rules need.

Each subclass changes only what would otherwise produce a wrong or weaker
query; everything else is the upstream backend's output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from sigma.backends.elasticsearch import EqlBackend, ESQLBackend
from sigma.backends.loki import LogQLBackend
from sigma.backends.loki.loki import LogQLLogParser
from sigma.backends.splunk import SplunkBackend
from sigma.conversion.state import ConversionState
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaFeatureNotSupportedByBackendError
from sigma.rule import SigmaRule
from sigma.types import SigmaRegularExpression

from exporter.siem.pipeline import LINEAGE_FIELDS


def _field_of(cond: Any) -> str | None:
    field = getattr(cond, "field", None)
    if field is None and getattr(cond, "args", None):  # an OR of one field's values (in-expression)
        field = getattr(cond.args[0], "field", None)
    return field


class _NullGuard:
    """Under `not`, guard each comparison with a presence test (`guard` template).

    A document without the field must satisfy `not field = "x"` (Sigma's
    meaning, and a must_not in Elasticsearch); in three-valued null logic
    (ES|QL, the `eql` package) the comparison is null and so is its negation.
    """

    guard: ClassVar[str] = "({field} IS NOT NULL AND {expr})"
    escape_and_quote_field: Any
    _negated = 0

    def convert_condition_not(self, cond: Any, state: ConversionState) -> Any:
        self._negated += 1
        try:
            return super().convert_condition_not(cond, state)  # type: ignore[misc]
        finally:
            self._negated -= 1

    def _guard(self, cond: Any, expr: Any) -> Any:
        field = _field_of(cond)
        if not self._negated or field is None or not isinstance(expr, str):
            return expr
        return self.guard.format(field=self.escape_and_quote_field(field), expr=expr)

    def convert_condition_field_eq_val_str(self, cond: Any, state: ConversionState) -> Any:
        return self._guard(cond, super().convert_condition_field_eq_val_str(cond, state))  # type: ignore[misc]

    def convert_condition_field_eq_val_str_case_sensitive(self, cond: Any, state: ConversionState) -> Any:
        return self._guard(cond, super().convert_condition_field_eq_val_str_case_sensitive(cond, state))  # type: ignore[misc]

    def convert_condition_as_in_expression(self, cond: Any, state: ConversionState) -> Any:
        return self._guard(cond, super().convert_condition_as_in_expression(cond, state))  # type: ignore[misc]

    def convert_condition_field_eq_val_cidr(self, cond: Any, state: ConversionState) -> Any:
        return self._guard(cond, super().convert_condition_field_eq_val_cidr(cond, state))  # type: ignore[misc]

    def convert_condition_field_eq_val_re(self, cond: Any, state: ConversionState) -> Any:
        return self._guard(cond, super().convert_condition_field_eq_val_re(cond, state))  # type: ignore[misc]

    def convert_condition_field_eq_val_bool(self, cond: Any, state: ConversionState) -> Any:
        return self._guard(cond, super().convert_condition_field_eq_val_bool(cond, state))  # type: ignore[misc]


@dataclass(frozen=True)
class JoinPlan:
    """How the steps of an ordered chain join: fields every step shares (`shared`), each
    step's own fields (`per_step`: Sigma aliases, in group-by order), and the lineage slots
    of a kin join (x-provex-lineage: generation 0..depth of each step's process)."""

    shared: list[str]
    per_step: list[list[str]]
    kin_slots: list[str]


def join_plan(rule: SigmaCorrelationRule) -> JoinPlan:
    """The join of a temporal_ordered correlation; refuses what a query cannot say exactly."""
    aliases = {alias.alias: alias.mapping for alias in rule.aliases or ()}
    group_by = list(rule.group_by or [])
    per_step = []
    for ref in rule.rules:
        fields = []
        for name in group_by:
            if name in aliases:
                mapping = {str(r.reference): f for r, f in aliases[name].items()}
                if str(ref.reference) not in mapping:
                    raise SigmaFeatureNotSupportedByBackendError(
                        f"alias {name} names no field for step {ref.reference}"
                    )
                fields.append(mapping[str(ref.reference)])
        per_step.append(fields)
    shared = [name for name in group_by if name not in aliases]
    lineage = rule.custom_attributes.get("x-provex-lineage")
    if not lineage:
        return JoinPlan(shared, per_step, [])
    slots = rule.custom_attributes[LINEAGE_FIELDS]
    depth = int(lineage.get("depth", 2))
    if lineage.get("mode") != "kin":
        raise SigmaFeatureNotSupportedByBackendError(
            "x-provex-lineage descendant has no generation bound, and documents carry "
            f"{len(slots) - 1} generations of lineage"
        )
    if depth > len(slots) - 1:
        raise SigmaFeatureNotSupportedByBackendError(
            f"x-provex-lineage kin {depth}: documents carry {len(slots) - 1} generations of lineage"
        )
    if len(rule.rules) != 2:
        raise SigmaFeatureNotSupportedByBackendError(
            "x-provex-lineage joins of more than two steps are not exported (one query per"
            " combination of lineage slots)"
        )
    return JoinPlan(shared, per_step, list(slots[: depth + 1]))


def kin_pairs(depth: int) -> list[tuple[int, int]]:
    """The pairs of lineage slots (generation of step 1, of step 2) whose equality says "kin
    within `depth`". A slot past the known lineage repeats its topmost ancestor, so kinship at
    generations (i, j) shows again at (i + k, j + k): the pairs with depth on one side suffice."""
    return [(depth, j) for j in range(depth + 1)] + [(i, depth) for i in range(depth)]


def _step_query(ref: Any) -> str:
    queries = ref.rule.get_conversion_result()
    if len(queries) != 1:
        raise SigmaFeatureNotSupportedByBackendError(
            f"step {ref.reference} converts to {len(queries)} queries"
        )
    return str(queries[0])


class ProvexEqlBackend(_NullGuard, EqlBackend):
    """Elasticsearch EQL.

    Negations are null-guarded (_NullGuard). An existence test is `?field != null`.

    An ordered chain is a sequence (upstream's template appends `by <nothing> with runs=2`,
    not EQL, and has no Sigma aliases): fields every step shares in `sequence by`, each
    step's own (an alias) in a per-step `by`, and each step's join fields must be present (a
    missing key joins nothing). A kin join (x-provex-lineage) is one sequence per pair of
    lineage slots (kin_pairs): EQL joins on equal values only. Numbers and booleans compare
    with `==` (`:` is EQL's string match). value_count would become `with runs=N` (N events
    in a row with one value), which is not "N distinct values": refused.
    """

    # Lucene regexes (EQL's regex) need no "/" escape; EQL strings reject "\/".
    re_escape: ClassVar[tuple[str, ...]] = ()

    guard: ClassVar[str] = "(?{field} != null and {expr})"
    field_exists_expression: ClassVar[str] = "?{field} != null"
    field_not_exists_expression: ClassVar[str] = "?{field} == null"

    def convert_condition_field_eq_val_num(self, cond: Any, state: ConversionState) -> Any:
        return self._guard(cond, f"{self.escape_and_quote_field(cond.field)} == {cond.value}")

    def convert_condition_field_eq_val_bool(self, cond: Any, state: ConversionState) -> Any:
        value = "true" if cond.value.boolean else "false"
        return self._guard(cond, f"{self.escape_and_quote_field(cond.field)} == {value}")

    def convert_condition_field_eq_val_re(self, cond: Any, state: ConversionState) -> Any:
        """Lucene regexes always match the whole value and have no ^ or $ anchors:
        drop the anchors a Sigma regex has, and pad with .* where it has none."""
        pattern = str(cond.value.regexp)
        pattern = pattern[1:] if pattern.startswith("^") else ".*" + pattern
        anchored_end = pattern.endswith("$") and not pattern.endswith("\\$")
        pattern = pattern[:-1] if anchored_end else pattern + ".*"
        cond.value = SigmaRegularExpression(pattern, cond.value.flags)
        return super().convert_condition_field_eq_val_re(cond, state)

    def convert_correlation_value_count_rule(
        self, rule: SigmaCorrelationRule, output_format: str | None = None, method: str = "default"
    ) -> list[str]:
        raise SigmaFeatureNotSupportedByBackendError(
            "EQL cannot count distinct values (value_count): `with runs` counts consecutive events"
            " (the esql export has this rule)"
        )

    def convert_correlation_temporal_ordered_rule(
        self, rule: SigmaCorrelationRule, output_format: str | None = None, method: str = "sequence"
    ) -> list[str]:
        plan = join_plan(rule)
        by = f" by {', '.join(map(self.escape_and_quote_field, plan.shared))}" if plan.shared else ""
        head = f"sequence{by} with maxspan={self.convert_timespan(rule.timespan, method)}"
        variants = [plan.per_step]
        if plan.kin_slots:
            first, then = plan.per_step
            slots = plan.kin_slots
            variants = [[[*first, slots[i]], [*then, slots[j]]] for i, j in kin_pairs(len(slots) - 1)]
        queries = []
        for keys in variants:
            steps = []
            for ref, fields in zip(rule.rules, keys, strict=True):
                quoted = [self.escape_and_quote_field(f) for f in fields]
                present = "".join(f" and {self.field_exists_expression.format(field=f)}" for f in quoted)
                condition = f"({_step_query(ref)}){present}" if present else _step_query(ref)
                steps.append(f"[any where {condition}]" + (f" by {', '.join(quoted)}" if quoted else ""))
            queries.append(head + "\n  " + "\n  ".join(steps))
        return queries


class ProvexSplunkBackend(SplunkBackend):
    """Splunk SPL. Upstream has no ordered temporal correlation (its temporal one counts step
    types in fixed time buckets). An ordered chain here is exact over a sliding window: each
    step's events, tagged with the step and their join key (shared fields, then the step's
    own alias fields), newest first; a streamstats pass per step from the last carries back
    when the rest of the chain can complete at the earliest (the nearest later event of the
    next step that can itself complete); a first-step event whose chain completes within the
    timespan is a match. A kin join (x-provex-lineage) expands each step's lineage slots
    (mvexpand): two events are kin when they share one. Array fields keep Splunk's JSON name
    `field{}` unquoted (a quoted token in `search` is a value)."""

    field_quote_pattern: ClassVar[re.Pattern[str]] = re.compile(r"^[\w.]+(\{\})?$")

    def convert_correlation_temporal_ordered_rule(
        self, rule: SigmaCorrelationRule, output_format: str | None = None, method: str = "stats"
    ) -> list[str]:
        plan = join_plan(rule)
        n = len(rule.rules)
        searches = []
        for k, (ref, own) in enumerate(zip(rule.rules, plan.per_step, strict=True), start=1):
            query = _step_query(ref).strip()
            search = f"search * {query}" if query.startswith("|") else f"search {query}"
            key = ' . "|" . '.join(f"'{f}'" for f in [*plan.shared, *own]) or '"all"'
            lineage = ""
            if plan.kin_slots:
                lineage = f", provex_kin=mvdedup(mvappend({', '.join(repr(f) for f in plan.kin_slots)}))"
            searches.append(f"[ {search} | eval provex_step={k}, provex_key={key}{lineage} ]")
        lines = ["| multisearch", *searches]
        if plan.kin_slots:
            lines += ["| mvexpand provex_kin", '| eval provex_key=provex_key . "|" . provex_kin']
        lines += ["| where isnotnull(provex_key)", "| sort 0 -_time"]
        lines += [f"| eval provex_done{n}=if(provex_step={n}, _time, null())"]
        for k in range(n - 1, 0, -1):
            lines.append(
                f"| streamstats current=f last(provex_done{k + 1}) as provex_next{k + 1} by provex_key"
            )
            if k > 1:
                lines.append(f"| eval provex_done{k}=if(provex_step={k}, provex_next{k + 1}, null())")
        span = int(rule.timespan.seconds)
        lines.append(f"| where provex_step=1 AND provex_next2 - _time <= {span}")
        return ["\n".join(lines)]


class ProvexESQLBackend(_NullGuard, ESQLBackend):
    """Elasticsearch ES|QL; an existence test is `IS NOT NULL`; negations are null-guarded.
    Ordered chains are refused: ES|QL aggregates rows, it has no sequence and no window
    function to carry one event's time to the next (the EQL export has them)."""

    field_exists_expression: ClassVar[str] = "{field} IS NOT NULL"
    field_not_exists_expression: ClassVar[str] = "{field} IS NULL"

    def convert_correlation_temporal_ordered_rule(
        self, rule: SigmaCorrelationRule, output_format: str | None = None, method: str = "default"
    ) -> list[str]:
        raise SigmaFeatureNotSupportedByBackendError(
            "ES|QL cannot order events: it has no sequence and no window function (an ordered"
            " chain is in the elasticsearch-eql export)"
        )


class ProvexLogQLBackend(LogQLBackend):
    """Loki LogQL over the OTLP log line: the ECS body as JSON, in the streams
    of service_name="provex" (Loki's label for the resource's service.name).
    The json parser turns a JSON boolean into the label value "true" or "false":
    a boolean compares as that string (upstream has no boolean)."""

    bool_values: ClassVar[dict[bool, str | None]] = {True: '"true"', False: '"false"'}

    def convert_condition_field_eq_val_cidr(self, cond: Any, state: ConversionState) -> Any:
        """Upstream's CIDR template names the field unsanitised (`destination.ip`), which is
        not a label the json parser makes (`destination_ip`) nor valid LogQL."""
        network = cond.value.network
        return self.cidr_expression.format(
            field=self.escape_and_quote_field(cond.field),
            value=str(network),
            network=network.network_address,
            prefixlen=network.prefixlen,
            netmask=network.netmask,
        )

    def select_log_parser(self, rule: SigmaRule) -> Any:
        return LogQLLogParser.JSON

    def select_log_stream(self, rule: SigmaRule) -> str:
        return '{service_name="provex"}'
