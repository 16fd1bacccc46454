"""Sigma detections compiled once into plain Python predicates over an EventView.

pySigma parses a rule's condition into a tree in which selections, `1 of`,
`all of` and value modifiers are already expanded; this module turns each
node into a closure. Strings compare case-insensitively (Sigma's default)
unless the `cased` modifier was used; a list field matches when any element
does. Anything the engine cannot evaluate raises `Unsupported` with a cause.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import re
from collections.abc import Callable

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from exporter.taxonomy.fields import FIELDS, EventView, Value

Predicate = Callable[[EventView], bool]
Test = Callable[[Value], bool]


class Unsupported(Exception):
    """The rule is valid Sigma but cannot be evaluated on provex events."""

    def __init__(self, cause: str, message: str, field: str = "", suggestion: str = "") -> None:
        self.cause = cause
        self.field = field
        self.suggestion = suggestion  # a known name close to the unknown one: likely a typo
        super().__init__(message)


def compile_condition(node: object, category: str) -> Predicate:
    if isinstance(node, ConditionAND):
        return _all_of([compile_condition(a, category) for a in node.args])
    if isinstance(node, ConditionOR):
        return _any_of(_or_parts(node.args, category))
    if isinstance(node, ConditionNOT):
        inner = compile_condition(node.args[0], category)
        return lambda v: not inner(v)
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _leaf(node.field, node.value, category)
    if isinstance(node, ConditionValueExpression):
        raise Unsupported("keyword_search", "keyword (field-less) detections are not evaluated")
    raise Unsupported("condition", f"unsupported condition element {type(node).__name__}")


def condition_fields(node: object) -> frozenset[str]:
    """Every field a parsed condition reads."""
    if isinstance(node, ConditionAND | ConditionOR | ConditionNOT):
        return frozenset().union(*(condition_fields(a) for a in node.args))
    if isinstance(node, ConditionFieldEqualsValueExpression):
        extra = {node.value.field} if isinstance(node.value, SigmaFieldReference) else set()
        return frozenset({node.field, *extra}) if node.field else frozenset(extra)
    return frozenset()


def check_field(name: str, category: str) -> None:
    field = FIELDS.get(name)
    if field is None:
        near = difflib.get_close_matches(name, list(FIELDS), 1, 0.8)
        if near:
            hint = f": did you mean {near[0]!r}?"
        else:  # no typo: provex has no value for it; still name the closest field it has
            closest = difflib.get_close_matches(name, list(FIELDS), 1, 0.0)
            hint = f", which provex has no value for (nearest known field: {closest[0]!r})" if closest else ""
        raise Unsupported(
            "unknown_field",
            f"unknown field {name!r}{hint} (see exporter/taxonomy/FIELDS.md)",
            name,
            near[0] if near else "",
        )
    if category not in field.categories:
        raise Unsupported(
            "field_not_in_category",
            f"field {name!r} is not set on {category} events"
            f" (it is on: {', '.join(sorted(field.categories))})",
            name,
        )


def _leaf(name: str | None, value: object, category: str) -> Predicate:
    if name is None:
        raise Unsupported("keyword_search", "keyword (field-less) detections are not evaluated")
    check_field(name, category)
    if isinstance(value, SigmaFieldReference):
        check_field(value.field, category)
        other = value.field
        return lambda v: _norm(v.get(name)) == _norm(v.get(other))
    test = _value_test(value)
    if FIELDS[name].kind == "list":
        return lambda v: any(test(x) for x in (v.get(name) or []))  # type: ignore[union-attr]
    return _field_test(name, test)


# AND and OR run for every rule on every event: plain calls for the common arities, and a
# loop otherwise, cost less than all()/any() over a generator.
def _all_of(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts
        return lambda v: a(v) and b(v)
    if len(parts) == 3:
        a, b, c = parts
        return lambda v: a(v) and b(v) and c(v)

    def all_of(v: EventView) -> bool:
        for p in parts:  # noqa: SIM110 (a loop, not all() over a generator: see above)
            if not p(v):
                return False
        return True

    return all_of


def _any_of(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts
        return lambda v: a(v) or b(v)

    def any_of(v: EventView) -> bool:
        for p in parts:  # noqa: SIM110
            if p(v):
                return True
        return False

    return any_of


def or_groups(args: list) -> list[object | tuple[str, list[object]]]:
    """The alternatives of an OR, in order: a condition node as it is, or (field, values) for
    the leaves on one scalar field (what a Sigma value list or a `1 of` over one field
    expands to), which are tested together (the native core's IR groups them alike)."""
    groups: dict[str, list[object]] = {}
    order: list[object | tuple[str, list[object]]] = []
    for arg in args:
        name = arg.field if isinstance(arg, ConditionFieldEqualsValueExpression) else None
        if (
            name is None
            or isinstance(arg.value, SigmaFieldReference)
            or name not in FIELDS
            or FIELDS[name].kind == "list"
        ):
            order.append(arg)
            continue
        if name not in groups:
            groups[name] = []
            order.append((name, groups[name]))
        groups[name].append(arg.value)
    return order


def _or_parts(args: list, category: str) -> list[Predicate]:
    """One predicate per alternative of an OR. A field's values (or_groups) make one
    predicate that reads the field once and tests all of them together: exact strings by a
    set, prefixes and suffixes by one startswith/endswith call (Sigma value lists make such
    ORs common)."""
    parts = []
    for item in or_groups(args):
        if not isinstance(item, tuple):
            parts.append(compile_condition(item, category))
        elif len(item[1]) == 1:
            parts.append(_leaf(item[0], item[1][0], category))
        else:
            check_field(item[0], category)
            parts.append(_field_test(item[0], _any_value_test(item[1])))
    return parts


def _field_test(name: str, test: Test) -> Predicate:
    return lambda v: test(v.get(name))


def value_shapes(values: list[object]) -> tuple[set[str], list[str], list[str], list[object]]:
    """Sigma values tested together (or_groups): the lower-cased exact strings, prefixes and
    suffixes, and the values of any other kind, each in order."""
    exact: set[str] = set()
    prefixes: list[str] = []
    suffixes: list[str] = []
    others: list[object] = []
    for value in values:
        shape = _string_shape(value) if type(value) is SigmaString else None
        if shape is None or shape[0] == "contains":
            others.append(value)
        elif shape[0] == "exact":
            exact.add(shape[1])
        elif shape[0] == "prefix":
            prefixes.append(shape[1])
        else:
            suffixes.append(shape[1])
    return exact, prefixes, suffixes, others


def _any_value_test(values: list[object]) -> Test:
    """One test that holds when any of `values` matches (see _or_parts)."""
    exact, prefixes, suffixes, other_values = value_shapes(values)
    others = [_value_test(value) for value in other_values]
    starts, ends = tuple(prefixes), tuple(suffixes)

    def test(x: Value) -> bool:
        if x is None:
            return False
        text = _text(x).lower()
        if text in exact or (starts and text.startswith(starts)) or (ends and text.endswith(ends)):
            return True
        return any(t(x) for t in others)

    return test


def _string_shape(value: SigmaString) -> tuple[str, str] | None:
    """("exact" | "prefix" | "suffix" | "contains", lower-cased text) for the plain shapes of a
    case-insensitive Sigma string, None for anything else (placeholders, inner wildcards)."""
    if value.contains_placeholder():
        return None
    parts = list(value.s)
    multi = SpecialChars.WILDCARD_MULTI
    plain = [p for p in parts if isinstance(p, str)]
    if len(plain) != 1 or not all(isinstance(p, str) or p is multi for p in parts):
        return None
    starts, ends = parts[0] is multi, parts[-1] is multi
    if len(parts) != 1 + starts + ends:
        return None
    kind = "contains" if starts and ends else "suffix" if starts else "prefix" if ends else "exact"
    return kind, plain[0].lower()


def _norm(value: Value) -> Value:
    return value.lower() if isinstance(value, str) else value


def _value_test(value: object) -> Test:
    if isinstance(value, SigmaExpansion):
        tests = [_value_test(x) for x in value.values]
        return lambda x: any(t(x) for t in tests)
    if isinstance(value, SigmaString):
        return _string_test(value, cased=isinstance(value, SigmaCasedString))
    if isinstance(value, SigmaBool):
        want = value.boolean
        return lambda x: x is want or (x.__class__ is not bool and _as_bool(x) == want)
    if isinstance(value, SigmaNumber):
        number = value.number
        return lambda x: _as_number(x) == number
    if isinstance(value, SigmaNull):
        return lambda x: x is None or x == "" or x == []
    if isinstance(value, SigmaExists):
        want = value.exists
        return lambda x: (x is not None and x != "" and x != []) == want
    if isinstance(value, SigmaRegularExpression):
        pattern = regex_of(value)
        return lambda x: x is not None and pattern.search(_text(x)) is not None
    if isinstance(value, SigmaCIDRExpression):
        network = value.network
        return lambda x: _in_network(x, network)
    if isinstance(value, SigmaCompareExpression):
        number = value.number.number
        op = {
            SigmaCompareExpression.CompareOperators.LT: lambda a: a < number,
            SigmaCompareExpression.CompareOperators.LTE: lambda a: a <= number,
            SigmaCompareExpression.CompareOperators.GT: lambda a: a > number,
            SigmaCompareExpression.CompareOperators.GTE: lambda a: a >= number,
            SigmaCompareExpression.CompareOperators.NEQ: lambda a: a != number,
        }[value.op]

        def compare(x: Value) -> bool:
            n = _as_number(x)
            return n is not None and op(n)

        return compare
    raise Unsupported("value_type", f"unsupported value type {type(value).__name__}")


def string_form(value: SigmaString, cased: bool) -> tuple[str, str | re.Pattern[str]]:
    """How a Sigma string matches a value's text: ("exact" | "prefix" | "suffix" | "contains",
    text) for the shapes contains/startswith/endswith produce (the text lower-cased unless
    cased; "*" alone is ("contains", "")), else ("fullmatch", its regular expression)."""
    if value.contains_placeholder():
        raise Unsupported("placeholder", "placeholders (%name%) need a pipeline; none is configured")
    parts = list(value.s)
    multi = SpecialChars.WILDCARD_MULTI
    plain = [p for p in parts if isinstance(p, str)]
    if all(isinstance(p, str) or p is multi for p in parts) and len(plain) <= 1:
        text = (plain[0] if cased else plain[0].lower()) if plain else ""
        starts = bool(parts) and parts[0] is multi
        ends = bool(parts) and parts[-1] is multi
        if (starts and ends) or (starts and not plain):
            return "contains", text
        return ("suffix" if starts else "prefix" if ends else "exact"), text
    regex = str(value.to_regex().regexp)
    return "fullmatch", re.compile(regex, 0 if cased else re.IGNORECASE | re.DOTALL)


def regex_of(value: SigmaRegularExpression) -> re.Pattern[str]:
    """A Sigma `|re` value, compiled with its flags (searched, not matched whole)."""
    flags = 0
    for flag in value.flags:
        flags |= {
            SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
            SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
            SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
        }[flag]
    try:
        return re.compile(str(value.regexp), flags)
    except re.error as exc:
        raise Unsupported("regex", f"regular expression not supported by Python re: {exc}") from exc


def _string_test(value: SigmaString, cased: bool) -> Test:
    kind, text = string_form(value, cased)
    fold = (lambda s: s) if cased else str.lower
    if kind == "fullmatch":
        pattern = text
        return lambda x: x is not None and pattern.fullmatch(_text(x)) is not None  # type: ignore[union-attr]
    if kind == "contains":
        return lambda x: x is not None and text in fold(_text(x))  # type: ignore[operator]
    if kind == "suffix":
        return lambda x: x is not None and fold(_text(x)).endswith(text)  # type: ignore[arg-type]
    if kind == "prefix":
        return lambda x: x is not None and fold(_text(x)).startswith(text)  # type: ignore[arg-type]
    return lambda x: x is not None and fold(_text(x)) == text


def _text(x: Value) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    return x if isinstance(x, str) else str(x)


def _as_bool(x: Value) -> bool | None:
    if isinstance(x, bool):
        return x
    if isinstance(x, str):
        return {"true": True, "false": False}.get(x.lower())
    if isinstance(x, int):
        return x != 0
    return None


def _as_number(x: Value) -> int | float | None:
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, int | float):
        return x
    try:
        return int(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _in_network(x: Value, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if not isinstance(x, str) or not x:
        return False
    address = _address(x)
    return address is not None and address in network


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A parsed address (a node talks to few; parsing costs more than the rule)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
