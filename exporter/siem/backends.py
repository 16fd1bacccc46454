"""pySigma's own backends, with the few corrections provex's rules need.

Each subclass changes only what would otherwise produce a wrong or weaker
query; everything else is the upstream backend's output.
"""

from __future__ import annotations

import re
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


class ProvexEqlBackend(_NullGuard, EqlBackend):
    """Elasticsearch EQL.

    Negations are null-guarded (_NullGuard). An existence test is `?field != null`.

    Upstream's ordered-temporal template appends `by <nothing> with runs=2`
    after the last step (not EQL); a sequence needs only its steps. Numbers
    and booleans compare with `==` (`:` is EQL's string match). value_count would become
    `with runs=N` (N events in a row with one value), which is not "N distinct
    values": refused.
    """

    # Lucene regexes (EQL's regex) need no "/" escape; EQL strings reject "\/".
    re_escape: ClassVar[tuple[str, ...]] = ()
    temporal_ordered_correlation_query: ClassVar[dict[str, str]] = {
        "sequence": "sequence {groupby} with maxspan={timespan}\n  {search}"
    }
    correlation_search_multi_rule_query_expression_joiner: ClassVar[str] = "\n  "

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
        )


class ProvexSplunkBackend(SplunkBackend):
    """Splunk SPL. Upstream has no ordered temporal correlation; for two steps it
    is upstream's temporal search plus a check that the first step's earliest
    time precedes the second step's latest time in the same bucket. Three or
    more steps cannot be ordered that way: refused. Array fields keep Splunk's
    JSON name `field{}` unquoted (a quoted token in `search` is a value)."""

    field_quote_pattern: ClassVar[re.Pattern[str]] = re.compile(r"^[\w.]+(\{\})?$")

    def convert_correlation_temporal_ordered_rule(
        self, rule: SigmaCorrelationRule, output_format: str | None = None, method: str = "stats"
    ) -> list[str]:
        steps = rule.referenced_rules
        if len(steps) != 2:
            raise SigmaFeatureNotSupportedByBackendError(
                "SPL stats cannot order more than two steps of a temporal_ordered correlation"
            )
        # The multisearch tags each step's events with event_type = the step rule's name.
        first, second = (str(step.rule.name or step.rule.id) for step in steps)
        search = self.convert_correlation_search(rule)
        groupby = self.convert_correlation_aggregation_groupby_from_template(rule.group_by, method)
        timespan = self.convert_timespan(rule.timespan, method)
        return [
            f"{search}\n\n| bin _time span={timespan}\n"
            f'| stats dc(event_type) as event_type_count min(eval(if(event_type="{first}", _time, null()))) as first_time'
            f' max(eval(if(event_type="{second}", _time, null()))) as last_time by _time{groupby}\n\n'
            "| search event_type_count >= 2\n| where first_time < last_time"
        ]


class ProvexESQLBackend(_NullGuard, ESQLBackend):
    """Elasticsearch ES|QL; an existence test is `IS NOT NULL`; negations are null-guarded."""

    field_exists_expression: ClassVar[str] = "{field} IS NOT NULL"
    field_not_exists_expression: ClassVar[str] = "{field} IS NULL"


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
