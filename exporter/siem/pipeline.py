"""A pySigma processing pipeline: provex's rule taxonomy -> the ECS or OCSF fields provex emits.

Items, in order:
1. `provex_taxonomy`: each detection item's field (and, where the schema
   encodes a value differently, its values) goes to its home
   (exporter.siem.homes); a correlation's group-by and counted field too. A
   field without a home fails the rule with the reason (NoHome): never dropped.
2. `provex_logsource_<category>`: the document conditions that select the
   category's events (event.category / class_uid ...), or a failure when the
   schema cannot select them exactly. Targets that cannot test arrays select
   without the array field event.type (exporter.siem.homes.SCALAR_LOGSOURCES).
3. `provex_success_only`: provex rules see successful syscalls only, unless
   they say `x-provex-include-failed: true`.
4. ECS: `provex_events_index`, the data stream of raw events (ES|QL's FROM).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaTransformationError
from sigma.processing.conditions import LogsourceCondition, RuleProcessingCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import (
    AddConditionTransformation,
    RuleFailureTransformation,
    SetStateTransformation,
)
from sigma.processing.transformations.base import DetectionItemTransformation
from sigma.rule import SigmaDetectionItem, SigmaRule
from sigma.types import SigmaBool, SigmaExists, SigmaNumber, SigmaString

from exporter.siem.homes import ARRAY_FIELDS, EXISTS, LOGSOURCES, SCALAR_LOGSOURCES, SUCCESS, NoHome, home_of

EVENTS_INDEX = "logs-provex.events-*"
# The rule fields of a process's lineage as documents carry it (generation 0, 1, 2, ...), and
# the custom attribute where the pipeline leaves their document fields for the backends.
LINEAGE_SLOTS = ("ProcessId", *(f"AncestorProcessId{n}" for n in range(1, 5)))
LINEAGE_FIELDS = "provex-lineage-fields"


class NoHomeError(SigmaTransformationError):
    """pySigma's error type for a field without a home (keeps the reason)."""


@dataclass
class TaxonomyTransformation(DetectionItemTransformation):
    """Rename taxonomy fields to document fields; translate encoded values."""

    schema: str = "ecs"
    no_arrays: str = ""
    array_suffix: str = ""  # appended to array fields' names (Splunk: "{}")
    _category: str | None = field(default=None, init=False, repr=False, compare=False)

    def apply(self, rule: SigmaRule | SigmaCorrelationRule) -> None:
        if isinstance(rule, SigmaCorrelationRule):
            self._apply_correlation(rule)
            return
        self._category = rule.logsource.category
        super().apply(rule)

    def _home(self, name: str) -> str:
        try:
            home = home_of(self.schema, name, self._category, self.no_arrays)
        except NoHome as exc:
            raise NoHomeError(str(exc)) from None
        if home.values is not None:
            raise NoHomeError(
                f"{name} cannot group or count in {self.schema.upper()}: its values are encoded"
            )
        return home.field

    def _apply_correlation(self, rule: SigmaCorrelationRule) -> None:
        # An alias names one field per step rule, each homed by that rule's category; the
        # group-by keeps the alias (the backend joins each step on its own field).
        steps = {str(ref.reference): ref.rule for ref in rule.rules if ref.rule is not None}
        aliases = set()
        for alias in rule.aliases or ():
            aliases.add(alias.alias)
            for ref, name in alias.mapping.items():
                step = steps.get(str(ref.reference))
                self._category = step.logsource.category if isinstance(step, SigmaRule) else None
                alias.mapping[ref] = self._home(name)
        self._category = None
        if rule.group_by:
            rule.group_by = [name if name in aliases else self._home(name) for name in rule.group_by]
        if "x-provex-lineage" in rule.custom_attributes:
            # Where the documents carry the lineage the agent's kin test reads: the pid, then
            # the ancestor slots (exporter/siem/backends.py joins on pairs of them).
            rule.custom_attributes[LINEAGE_FIELDS] = [self._home(name) for name in LINEAGE_SLOTS]
        condition = rule.condition
        ref = getattr(condition, "fieldref", None)
        if isinstance(ref, str) and ref:
            condition.fieldref = self._home(ref)
        elif isinstance(ref, list):
            condition.fieldref = [self._home(name) for name in ref]

    def apply_detection_item(self, detection_item: SigmaDetectionItem) -> SigmaDetectionItem | None:
        name = detection_item.field
        if name is None:
            raise NoHomeError("keyword (field-less) detection items have no home in a document")
        try:
            home = home_of(self.schema, name, self._category, self.no_arrays)
        except NoHome as exc:
            raise NoHomeError(str(exc)) from None
        if home.values is not None:
            detection_item.value = [
                _typed(v) for raw in detection_item.value for v in _lookup(name, home, raw, self.schema)
            ]
        elif home.text:
            detection_item.value = [
                SigmaString(str(v.number)) if isinstance(v, SigmaNumber) else v for v in detection_item.value
            ]
        arrays = ARRAY_FIELDS.get(self.schema, frozenset())
        detection_item.field = home.field + (self.array_suffix if home.field in arrays else "")
        self.processing_item_applied(detection_item)
        return None


def _lookup(name: str, home: Any, raw: Any, schema: str) -> list[Any]:
    if isinstance(raw, SigmaBool):
        key = "true" if raw.boolean else "false"
    elif isinstance(raw, SigmaNumber):
        key = str(raw.number)
    elif isinstance(raw, SigmaString) and not raw.contains_special():
        key = str(raw)
    else:
        raise NoHomeError(
            f"{name}: only plain values can be translated to {home.field} ({schema.upper()}), not {raw!r}"
        )
    try:
        return home.values[key]
    except KeyError:
        raise NoHomeError(
            f"{name}: value {key!r} has no home in {schema.upper()} "
            f"({home.field} holds only {sorted(home.values)})"
        ) from None


def _typed(value: str | int | bool) -> SigmaString | SigmaNumber | SigmaBool | SigmaExists:
    if value == EXISTS:
        return SigmaExists(True)
    if isinstance(value, bool):  # before int: a bool is an int in Python
        return SigmaBool(value)
    return SigmaNumber(value) if isinstance(value, int) else SigmaString(value)


@dataclass
class SuccessOnly(RuleProcessingCondition):
    """A single-event rule without `x-provex-include-failed: true`."""

    def match(self, rule: SigmaRule | SigmaCorrelationRule) -> bool:
        if not isinstance(rule, SigmaRule):
            return False
        return rule.custom_attributes.get("x-provex-include-failed") is not True


@dataclass
class UnknownCategory(RuleProcessingCondition):
    """A single-event rule whose logsource is not one provex emits."""

    categories: list[str] = field(default_factory=list)

    def match(self, rule: SigmaRule | SigmaCorrelationRule) -> bool:
        if not isinstance(rule, SigmaRule):
            return False
        ls = rule.logsource
        return ls.product != "linux" or ls.category not in self.categories


def build_pipeline(schema: str, no_arrays: str = "", array_suffix: str = "") -> ProcessingPipeline:
    """The pipeline for documents of `schema` ("ecs" or "ocsf").

    `no_arrays`: why the target cannot test array fields ("" if it can);
    `array_suffix`: how the target names an array field (Splunk: "{}")."""
    transformation = TaxonomyTransformation(schema=schema, no_arrays=no_arrays, array_suffix=array_suffix)
    items = [ProcessingItem(transformation, identifier="provex_taxonomy")]
    categories = SCALAR_LOGSOURCES if no_arrays else LOGSOURCES[schema]
    items.append(
        ProcessingItem(
            RuleFailureTransformation(
                f"logsource is not one provex emits (product: linux, category: one of {sorted(categories)})"
            ),
            rule_conditions=[UnknownCategory(categories=sorted(categories))],
            identifier="provex_logsource_unknown",
        )
    )
    for category, conditions in categories.items():
        transformation = (
            RuleFailureTransformation(
                f"logsource category {category} cannot be selected in {schema.upper()}: {conditions}"
            )
            if isinstance(conditions, str)
            else AddConditionTransformation(dict(conditions))
        )
        items.append(
            ProcessingItem(
                transformation,
                rule_conditions=[LogsourceCondition(product="linux", category=category)],
                identifier=f"provex_logsource_{category}",
            )
        )
    items.append(
        ProcessingItem(
            AddConditionTransformation(dict(SUCCESS[schema])),
            rule_conditions=[SuccessOnly()],
            identifier="provex_success_only",
        )
    )
    if schema == "ecs":
        # Where the raw events are (otel-collector/gateway-elasticsearch.yaml); ES|QL names it in FROM.
        items.append(
            ProcessingItem(SetStateTransformation("index", EVENTS_INDEX), identifier="provex_events_index")
        )
    return ProcessingPipeline(name=f"provex taxonomy -> {schema.upper()}", priority=20, items=items)
