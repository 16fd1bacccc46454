"""Redaction of secrets in command lines, before anything leaves the agent.

The patterns are data (redact.yaml, next to this file). Two passes:

1. Across arguments: a flag named like a secret masks the next argument
   (`--token x`), `NAME=value` masks its value, and tool rules handle short
   options (`mysql -pSECRET`, `sshpass -p SECRET`, `curl -u user:SECRET`).
2. Inside every argument: the same knowledge as regular expressions, so that
   one argument holding a whole shell command (`sh -c '...'`), a JSON or YAML
   document or a header is redacted too (`PGPASSWORD=x psql`,
   `{"password":"z"}`, `Authorization: Bearer xyz`, `--password=y` mid-string).

Only the secret becomes ***: paths, hosts and URLs (without their
credentials) stay, since rules need them as evidence. Redaction is idempotent
(a replayed, already redacted argv is unchanged). Live exec events and
processes learned from /proc both go through `redact_argv`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import msgspec

from exporter import yamlfile

MASK = "***"
PATTERNS_FILE = Path(__file__).with_name("redact.yaml")

_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")  # camelCase, snake_case, kebab-case, SHOUTING
_QUOTED = re.compile(r"""^(["'])(.*)\1$""", re.DOTALL)
# One argument that is NAME=value or --name=value (the whole value is the secret).
_ARG_ASSIGNMENT = re.compile(r"^(--?[A-Za-z0-9][\w.-]*|[A-Za-z_][\w.-]*)=(.*)$", re.DOTALL)
_LONG_FLAG = re.compile(r"^--[A-Za-z0-9][\w.-]*$")
_ABSOLUTE_PATH = re.compile(r"^/[\w./-]*$")


@dataclass(frozen=True)
class ToolRule:
    tool: re.Pattern[str]  # the command's base name
    flag: re.Pattern[str]
    kind: str  # "next" | "glued" | "userpass"
    in_text: re.Pattern[str]  # the same rule inside a string


@dataclass(frozen=True)
class TextRule:
    name: str
    pattern: re.Pattern[str]
    name_group: str  # "" = every match is a secret


@dataclass(frozen=True)
class Patterns:
    words: frozenset[str]
    glued: tuple[str, ...]
    needs_word_before: dict[str, frozenset[str] | None]  # None: any word before
    never: frozenset[str]
    file_words: frozenset[str]
    tools: tuple[ToolRule, ...]
    text: tuple[TextRule, ...]

    def is_secret_name(self, name: str) -> bool:
        name = name.lstrip("-")
        if name.lower() in self.never:
            return False
        words = [w.lower() for w in _WORDS.findall(name)]
        if not words:
            return False
        last = words[-1]
        if last in self.needs_word_before:
            allowed = self.needs_word_before[last]
            return len(words) > 1 and (allowed is None or words[-2] in allowed)
        if last in self.words:
            return True
        return any(last.endswith(suffix) for suffix in self.glued)

    def keeps_value(self, name: str, value: str) -> bool:
        """A file named by a credentials variable is evidence, not the secret itself."""
        words = [w.lower() for w in _WORDS.findall(name)]
        return bool(words) and words[-1] in self.file_words and bool(_ABSOLUTE_PATH.match(value))


def _tool_text_pattern(tool: str, flag: str, kind: str) -> re.Pattern[str]:
    # The tool's name as a command word, then anything up to the flag within one command.
    head = rf"(?<![\w.-])(?:[\w./-]*/)?(?:{tool})(?=[ \t])[^;&|\n]*?(?<=[ \t])(?:{flag})"
    quoted = r"\"[^\"\n]*\"|'[^'\n]*'"
    value = {
        "glued": rf"(?P<value>{quoted}|[^\s'\";&|]+)",
        "next": rf"[ \t]+(?P<value>{quoted}|[^\s'\";&|-][^\s'\";&|]*)",
        "userpass": r"[ \t]*[\"']?[^\s:'\";&|]+:(?P<value>[^\s'\";&|]+)",
    }[kind]
    return re.compile(head + value)


class _NamesSpec(msgspec.Struct, forbid_unknown_fields=True):
    words: frozenset[str]
    glued: tuple[str, ...]
    needs_word_before: dict[str, Literal["any"] | frozenset[str]]
    never: frozenset[str]
    file_words: frozenset[str] = frozenset()


class _ToolSpec(msgspec.Struct, forbid_unknown_fields=True):
    tool: str
    flag: str
    kind: Literal["next", "glued", "userpass"]


class _TextSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    pattern: str
    name_group: str = ""


class _PatternsFile(msgspec.Struct, forbid_unknown_fields=True):
    names: _NamesSpec
    tools: list[_ToolSpec]
    in_text: list[_TextSpec]


@cache
def patterns(path: Path = PATTERNS_FILE) -> Patterns:
    """The patterns; a file of the wrong shape raises YamlFileError at the line at fault."""
    doc = yamlfile.load(path)
    data: _PatternsFile = doc.convert(_PatternsFile)
    tools = tuple(
        ToolRule(
            tool=doc.regex(rule.tool, "tools", i, "tool"),
            flag=doc.regex(rule.flag, "tools", i, "flag"),
            kind=rule.kind,
            in_text=_tool_text_pattern(rule.tool, rule.flag, rule.kind),
        )
        for i, rule in enumerate(data.tools)
    )
    text = tuple(
        TextRule(rule.name, doc.regex(rule.pattern, "in_text", i, "pattern"), rule.name_group)
        for i, rule in enumerate(data.in_text)
    )
    names = data.names
    return Patterns(
        words=names.words,
        glued=names.glued,
        needs_word_before={
            word: None if before == "any" else before for word, before in names.needs_word_before.items()
        },
        never=names.never,
        file_words=names.file_words,
        tools=tools,
        text=text,
    )


def redact_argv(argv: list[str]) -> list[str]:
    """A copy of argv with secret values replaced by ***."""
    if not argv:
        return argv
    p = patterns()
    return [redact_text(arg, p) for arg in _redact_arguments(argv, p)]


def redact_text(text: str, p: Patterns | None = None) -> str:
    """Secrets inside one string (a shell command, a JSON or YAML document, a header)."""
    p = p or patterns()
    for rule in p.tools:
        text = _sub(rule.in_text, text, None, p)
    for text_rule in p.text:
        text = _sub(text_rule.pattern, text, text_rule.name_group or None, p)
    return text


def _sub(pattern: re.Pattern[str], text: str, name_group: str | None, p: Patterns) -> str:
    """Mask the `value` group of each match that is a secret. After a match that is not,
    the search goes on from its value, so `--from-literal=password=x` and
    `{"data": {"password": "x"}}` are still found."""
    pos = 0
    while (m := pattern.search(text, pos)) is not None:
        value = m.group("value")
        start, end = m.span("value")
        if name_group is not None:
            name = m.group(name_group)
            if not p.is_secret_name(name) or p.keeps_value(name, _unquote(value)):
                pos = start if start > m.start() else m.end()
                continue
        quoted = _QUOTED.match(value)
        masked = f"{quoted.group(1)}{MASK}{quoted.group(1)}" if quoted else MASK
        text = text[:start] + masked + text[end:]
        pos = start + len(masked)
    return text


def _unquote(value: str) -> str:
    quoted = _QUOTED.match(value)
    return quoted.group(2) if quoted else value


def _redact_arguments(argv: list[str], p: Patterns) -> list[str]:
    """Pass 1: what one argument says about the next, and NAME=value arguments."""
    tool = argv[0].rsplit("/", 1)[-1]
    rules = [rule for rule in p.tools if rule.tool.fullmatch(tool)]
    out = [argv[0]]
    pending = ""  # what the previous argument says this one is: "secret" or "userpass"
    for arg in argv[1:]:
        if pending == "secret":
            out.append(MASK)
        elif pending == "userpass":
            user, sep, _ = arg.partition(":")
            out.append(f"{user}:{MASK}" if sep else arg)
        else:
            out.append(_redact_argument(arg, rules, p))
        pending = "" if pending else _next_is(arg, rules, p)
    return out


def _next_is(arg: str, rules: list[ToolRule], p: Patterns) -> str:
    """Whether this flag, on its own, announces a secret as the next argument."""
    for rule in rules:
        if rule.kind in ("next", "userpass") and rule.flag.fullmatch(arg):
            return "secret" if rule.kind == "next" else "userpass"
    if _LONG_FLAG.match(arg) and p.is_secret_name(arg):
        return "secret"
    return ""


def _redact_argument(arg: str, rules: list[ToolRule], p: Patterns) -> str:
    for rule in rules:
        if rule.kind == "glued" and not arg.startswith("--"):
            m = rule.flag.match(arg)
            if m and len(arg) > m.end() and arg[m.end() :] != MASK:
                return arg[: m.end()] + MASK  # mysql -pSECRET (a bare -p prompts instead)
        if rule.kind == "userpass" and not arg.startswith("--"):
            m = rule.flag.match(arg)
            if m and len(arg) > m.end() and ":" in arg[m.end() :]:
                user = arg[m.end() :].partition(":")[0]
                return f"{arg[: m.end()]}{user}:{MASK}"  # curl -uuser:SECRET
    m = _ARG_ASSIGNMENT.match(arg)
    if m and p.is_secret_name(m.group(1)) and not p.keeps_value(m.group(1), m.group(2)):
        value = m.group(2)
        # --name=value: the whole value. NAME=value with spaces may be a whole shell
        # command (sh -c 'PGPASSWORD=x psql ...'): pass 2 masks just the word.
        if value and (m.group(1).startswith("-") or not any(c.isspace() for c in value)):
            return f"{m.group(1)}={MASK}"
    return arg
