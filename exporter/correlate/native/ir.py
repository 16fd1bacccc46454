"""Sigma detections compiled to the native core's rule IR.

The IR is nested tuples that `_core.pyx` (build_node, build_test) turns into its condition
nodes. It is read off the same parsed condition as compile.py's predicates, through
compile.py's own grouping and shapes (or_groups, value_shapes, string_form), so the two
engines judge alike:

  ("and", [node, ...])   ("or", [node, ...])   ("not", node)
  ("field", name, test)      a scalar field passes the test
  ("element", name, test)    a list field: any element passes
  ("same", name, other)      the two fields hold the same value (case-insensitive)

  tests: ("str", "exact" | "prefix" | "suffix" | "contains", text, cased)
         ("set", exact, prefixes, suffixes, [test, ...])   case-insensitive, one read
         ("any", [test, ...])  ("bool", want)  ("number", n)  ("null",)  ("exists", want)
         ("search", pattern, literal)  a regular expression, and a literal every match
                                       contains ("" when none is known: see required_literal)
         ("fullmatch", pattern)  ("cidr", network)  ("compare", op, n)
         ("python", test)     a value kind the IR has no node for: compile.py's own closure
"""

from __future__ import annotations

import re

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
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
    SigmaString,
)

from exporter.correlate.compile import (
    Unsupported,
    _value_test,
    or_groups,
    regex_of,
    string_form,
    value_shapes,
)
from exporter.taxonomy.fields import FIELDS

_COMPARE = {
    SigmaCompareExpression.CompareOperators.LT: "<",
    SigmaCompareExpression.CompareOperators.LTE: "<=",
    SigmaCompareExpression.CompareOperators.GT: ">",
    SigmaCompareExpression.CompareOperators.GTE: ">=",
    SigmaCompareExpression.CompareOperators.NEQ: "!=",
}


def condition_ir(node: object) -> tuple:
    """The IR of a parsed condition the loader compiled (so every field is known)."""
    if isinstance(node, ConditionAND):
        return ("and", [condition_ir(a) for a in node.args])
    if isinstance(node, ConditionOR):
        parts = []
        for item in or_groups(node.args):
            if not isinstance(item, tuple):
                parts.append(condition_ir(item))
            elif len(item[1]) == 1:
                parts.append(_leaf(item[0], item[1][0]))
            else:
                parts.append(("field", item[0], _together(item[1])))
        return ("or", parts)
    if isinstance(node, ConditionNOT):
        return ("not", condition_ir(node.args[0]))
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _leaf(node.field, node.value)
    raise Unsupported("condition", f"unsupported condition element {type(node).__name__}")


def _leaf(name: str, value: object) -> tuple:
    if isinstance(value, SigmaFieldReference):
        return ("same", name, value.field)
    return ("element" if FIELDS[name].kind == "list" else "field", name, value_ir(value))


def _together(values: list[object]) -> tuple:
    exact, prefixes, suffixes, others = value_shapes(values)
    return ("set", sorted(exact), prefixes, suffixes, [value_ir(v) for v in others])


def value_ir(value: object) -> tuple:
    """The IR test of one Sigma value (compile._value_test's semantics)."""
    if isinstance(value, SigmaExpansion):
        return ("any", [value_ir(v) for v in value.values])
    if isinstance(value, SigmaString):
        cased = isinstance(value, SigmaCasedString)
        kind, text = string_form(value, cased)
        return ("fullmatch", text) if kind == "fullmatch" else ("str", kind, text, cased)
    if isinstance(value, SigmaBool):
        return ("bool", value.boolean)
    if isinstance(value, SigmaNumber):
        return ("number", value.number)
    if isinstance(value, SigmaNull):
        return ("null",)
    if isinstance(value, SigmaExists):
        return ("exists", value.exists)
    if isinstance(value, SigmaCIDRExpression):
        return ("cidr", value.network)
    if isinstance(value, SigmaCompareExpression):
        return ("compare", _COMPARE[value.op], value.number.number)
    if isinstance(value, SigmaRegularExpression):
        pattern = regex_of(value)
        return ("search", pattern, required_literal(pattern))
    return ("python", _value_test(value))  # a value kind added to Sigma later


_SPECIAL = frozenset(".^$*+?{}[]\\|()")
_QUANTIFIERS = frozenset("*+?{")


def required_literal(pattern: re.Pattern[str]) -> str:
    """The longest run of plain characters at the top level of a regular expression: any
    text it matches contains that run, so a text without it cannot match (the core checks
    that before running the expression: most texts a rule sees fail there). "" when no such
    run is known: alternation at the top level, case-insensitive or verbose matching, or
    nothing plain outside groups, classes and quantified atoms."""
    if pattern.flags & (re.IGNORECASE | re.VERBOSE):
        return ""
    source = pattern.pattern
    runs: list[str] = []
    run: list[str] = []
    i, depth = 0, 0
    while i < len(source):
        c = source[i]
        if c == "\\" and i + 1 < len(source):
            atom, i = (source[i + 1], i + 2) if not source[i + 1].isalnum() else ("", i + 2)
        elif depth == 0 and c == "|":
            return ""  # alternatives: no one run is required
        elif c == "[":
            i = _class_end(source, i)
            atom = ""
        elif c == "(":
            depth += 1
            atom, i = "", i + 1
        elif c == ")":
            depth -= 1
            atom, i = "", i + 1
        elif c in _SPECIAL:
            atom, i = "", i + 1
        else:
            atom, i = c, i + 1
        quantified = i < len(source) and source[i] in _QUANTIFIERS
        if depth == 0 and atom and not quantified:
            run.append(atom)
            continue
        if run:
            runs.append("".join(run))
            run = []
    if run:
        runs.append("".join(run))
    return max(runs, key=len, default="")


def _class_end(source: str, start: int) -> int:
    """The index after a character class [...] that starts at `start`."""
    i = start + 1
    if i < len(source) and source[i] == "^":
        i += 1
    if i < len(source) and source[i] == "]":  # a ] first is a member
        i += 1
    while i < len(source) and source[i] != "]":
        i += 2 if source[i] == "\\" else 1
    return i + 1
