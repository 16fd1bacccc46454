"""Redaction of secrets in command lines, before anything leaves the agent.

The patterns are data (redact.yaml, next to this file). First over the argv's words,
then in each argument:

1. Words: what one argument says about the next or about itself. A flag named like
   a secret masks its value (`--token x`, `--token=x`, `-storepass x`), `NAME=value`
   masks the value, and tool rules handle what only the tool's manual says
   (`mysql -pX`, `sshpass -p X`, `curl -u user:X`, `smbclient -U user%X`,
   `htpasswd -b file user X`, `vault kv put path k=X`). A tool's rules apply from its
   name on, so `sudo mysql -pX` and `kubectl exec pod -- mysql -pX` are covered.
2. Text rules, in every argument (also one holding a whole shell command, a document or
   a connection string): headers, URLs with credentials or signatures, JSON/YAML keys,
   KEY=value and INI/ODBC/SQL forms, PEM blocks.
3. Inside an argument that holds a shell command (`sh -c '...'`): the word rules of 1,
   per command of the string (split at ; & | ( ) < > and newlines, quotes kept).
4. Credential shapes, wherever they appear: AWS keys, GitHub, GitLab, Slack and Vault
   tokens, JWTs...

Only the secret becomes ***: paths, hosts and URLs (without their credentials) stay,
since rules need them as evidence. Redaction is idempotent (a replayed, already
redacted argv is unchanged). Live exec events and processes learned from /proc
both go through `redact_argv`; it runs per exec on the consumer's thread, so each
text rule declares strings its matches contain (`when`) and is skipped without them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import msgspec

from exporter import yamlfile

MASK = "***"
PATTERNS_FILE = Path(__file__).with_name("redact.yaml")
CACHE_MAX = 4096  # names, tool names and clean arguments remembered (a workload chooses them: bounded)
CLEAN_MAX_LEN = 256  # longer arguments are not remembered (memory stays small)

Kind = Literal["value", "next", "glued", "userpass", "rest", "last", "pairs", "keep"]
_TAKES_ARGUMENT = ("value", "next", "userpass")  # the flag alone: its value is the next argument
_GLUES = ("value", "glued", "userpass")  # the value may be glued: -pX, --pass=X

_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")  # camelCase, snake_case, kebab-case, SHOUTING
_QUOTED = re.compile(r"""^(["'])(.*)\1$""", re.DOTALL)
# One argument that is NAME=value, --name=value or -Dname=value.
_ASSIGNMENT_ARG = re.compile(r"^(-{1,2}[A-Za-z][\w.-]*|[A-Za-z_][\w.-]*)=(.*)$", re.DOTALL)
# A flag that may take the next argument: --name, or -name of 3+ letters (Go, Java, openssl style).
_FLAG_ARG = re.compile(r"^(?:--[A-Za-z0-9][\w.-]*|-[A-Za-z][\w.-]{2,})$")
_PAIR = re.compile(r"^([A-Za-z_][\w.-]*)=([^=].*)$", re.DOTALL)  # k=v (not base64 padding: abc==)
_PATH = re.compile(r"^(?:~|\.{1,2})?/[\w./@+-]*$")
# The argument before a shell command string: sh -c, bash -lc, su -c, python3 -c, --command.
_CODE_FLAG = re.compile(r"^(?:-[A-Za-z]*c|--command)$")
_KV_LIST = re.compile(r"[\s,;][A-Za-z_][\w.-]*=")  # a further NAME= in the value: a list
# Shell words (quotes kept, an unterminated quote runs to the end: argv may be truncated)
# and the operators that end a command.
_SHELL_TOKEN = re.compile(
    r"""(?P<op>[;&|()`<>\n])|(?:[^\s'"\\;&|()`<>]|\\.|'[^']*(?:'|$)|"(?:[^"\\]|\\.)*(?:"|$))+""", re.DOTALL
)
_QUOTE_PART = re.compile(r"""'([^']*)'?|"((?:[^"\\]|\\.)*)"?|\\(.)""", re.DOTALL)
_DQ_ESCAPE = re.compile(r"""\\([\\"$`])""")
_SHELL_DEPTH = 3  # sh -c "bash -c 'mysql -pX'": commands inside quoted words, this deep
_REREAD_BUDGET = 16  # a text rule re-reads at most this many times the text's length


@dataclass(frozen=True)
class ToolRule:
    tool: re.Pattern[str]  # the command's base name
    flag: re.Pattern[str]  # the argument that starts the rule
    kind: Kind
    sep: str = ":"  # userpass: what separates the user from the secret
    after: re.Pattern[str] | None = None  # applies once an argument like this was seen
    until: re.Pattern[str] | None = None  # stops at an argument like this
    glued_long: re.Pattern[str] | None = None  # flag= (--pass=X)


@dataclass(frozen=True)
class TextRule:
    name: str
    pattern: re.Pattern[str]
    name_group: str  # "" = every match is a secret
    when: tuple[str, ...]  # lower-case; the rule is tried only on text holding one of them


@dataclass
class Patterns:
    words: frozenset[str]
    glued: tuple[str, ...]
    needs_word_before: dict[str, frozenset[str] | None]  # None: any word before
    never: frozenset[str]
    switch_first_words: frozenset[str]
    file_words: frozenset[str]
    tools: tuple[ToolRule, ...]
    text: tuple[TextRule, ...]
    shapes: re.Pattern[str] | None  # the credential shapes without `when`, one alternation
    _secret_names: dict[str, bool] = field(default_factory=dict, init=False, repr=False)
    _tool_rules: dict[str, tuple[ToolRule, ...]] = field(default_factory=dict, init=False, repr=False)
    # Arguments with nothing to mask: commands repeat (probes, cron, shells), and these hold no
    # secret by definition, so remembering them is safe; one that changed is never kept.
    clean: set[str] = field(default_factory=set, init=False, repr=False)
    # Each `when` string once, with the text rules it lets through (a bit per rule), so that an
    # argument costs one substring search per distinct string, not one per rule.
    _triggers: tuple[tuple[str, int], ...] = field(default=(), init=False, repr=False)
    _always: int = field(default=0, init=False, repr=False)  # the rules without `when`

    def __post_init__(self) -> None:
        bits: dict[str, int] = {}
        for i, rule in enumerate(self.text):
            for word in rule.when:
                bits[word] = bits.get(word, 0) | 1 << i
            if not rule.when:
                self._always |= 1 << i
        self._triggers = tuple(bits.items())

    def text_rules_for(self, text: str) -> int:
        """The text rules worth trying on `text`, a bit per rule."""
        lowered = text.lower()
        bits = self._always
        for word, rules in self._triggers:
            if word in lowered:
                bits |= rules
        return bits

    def is_secret_name(self, name: str) -> bool:
        known = self._secret_names.get(name)
        if known is None:
            if len(self._secret_names) >= CACHE_MAX:
                self._secret_names.clear()
            known = self._secret_names[name] = self._judge_name(name.lstrip("-"))
        return known

    def _judge_name(self, name: str) -> bool:
        if name.lower() in self.never:
            return False
        words = [w.lower() for w in _WORDS.findall(name)]
        if not words or (len(words) > 1 and words[0] in self.switch_first_words):
            return False
        last = words[-1]
        if last in self.needs_word_before:
            allowed = self.needs_word_before[last]
            return len(words) > 1 and (allowed is None or words[-2] in allowed)
        if last in self.words:
            return True
        return any(last.endswith(suffix) for suffix in self.glued)

    def keeps_value(self, name: str, value: str) -> bool:
        """A file named by a credentials-like name is evidence, not the secret itself."""
        words = _WORDS.findall(name)
        return bool(words) and words[-1].lower() in self.file_words and bool(_PATH.match(value))

    def rules_for(self, command: str) -> tuple[ToolRule, ...] | None:
        """The rules of a command word (a name or a path to it); None when it is no tool's."""
        base = command.rsplit("/", 1)[-1]
        rules = self._tool_rules.get(base)
        if rules is None:
            if len(self._tool_rules) >= CACHE_MAX:
                self._tool_rules.clear()
            rules = self._tool_rules[base] = tuple(r for r in self.tools if r.tool.fullmatch(base))
        return rules or None


# -- the file -------------------------------------------------------------------------------


class _NamesSpec(msgspec.Struct, forbid_unknown_fields=True):
    words: frozenset[str]
    glued: tuple[str, ...]
    needs_word_before: dict[str, Literal["any"] | frozenset[str]]
    never: frozenset[str]
    switch_first_words: frozenset[str] = frozenset()
    file_words: frozenset[str] = frozenset()


class _ToolSpec(msgspec.Struct, forbid_unknown_fields=True):
    tool: str
    flag: str
    kind: Kind
    sep: str = ""
    after: str = ""
    until: str = ""


class _TextSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    pattern: str
    name_group: str = ""
    when: list[str] = []


class _ShapeSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    pattern: str
    when: list[str] = []


class _PatternsFile(msgspec.Struct, forbid_unknown_fields=True):
    names: _NamesSpec
    tools: list[_ToolSpec]
    in_text: list[_TextSpec]
    shapes: list[_ShapeSpec] = []


@cache
def patterns(path: Path = PATTERNS_FILE) -> Patterns:
    """The patterns; a file of the wrong shape raises YamlFileError at the line at fault."""
    doc = yamlfile.load(path)
    data: _PatternsFile = doc.convert(_PatternsFile)
    names = data.names
    return Patterns(
        words=names.words,
        glued=names.glued,
        needs_word_before={
            word: None if before == "any" else before for word, before in names.needs_word_before.items()
        },
        never=names.never,
        switch_first_words=names.switch_first_words,
        file_words=names.file_words,
        tools=tuple(_tool_rule(doc, i, spec) for i, spec in enumerate(data.tools)),
        text=tuple(_text_rule(doc, "in_text", i, spec) for i, spec in enumerate(data.in_text))
        + tuple(_shape_rule(doc, i, spec) for i, spec in enumerate(data.shapes) if spec.when),
        shapes=_shapes(doc, data.shapes),
    )


def _tool_rule(doc: yamlfile.YamlDoc, i: int, spec: _ToolSpec) -> ToolRule:
    if spec.sep and spec.kind != "userpass":
        raise doc.error(f"`sep` applies to kind userpass only, not {spec.kind}", "tools", i, "sep")
    optional = {
        key: doc.regex(getattr(spec, key), "tools", i, key)
        for key in ("after", "until")
        if getattr(spec, key)
    }
    flag = doc.regex(spec.flag, "tools", i, "flag")
    return ToolRule(
        tool=doc.regex(spec.tool, "tools", i, "tool"),
        flag=flag,
        kind=spec.kind,
        sep=spec.sep or ":",
        glued_long=re.compile(f"(?:{flag.pattern})=") if spec.kind in _GLUES else None,
        **optional,
    )


def _text_rule(doc: yamlfile.YamlDoc, section: str, i: int, spec: _TextSpec) -> TextRule:
    pattern = doc.regex(spec.pattern, section, i, "pattern")
    groups = pattern.groupindex
    if "value" not in groups:
        raise doc.error("expected a group named `value` (what becomes ***)", section, i, "pattern")
    if spec.name_group and spec.name_group not in groups:
        raise doc.error(f"the pattern has no group named {spec.name_group!r}", section, i, "name_group")
    if any(not w or w != w.lower() for w in spec.when):
        raise doc.error(
            "`when` strings are looked for in lower-cased text: write them in lower case", section, i, "when"
        )
    return TextRule(spec.name, pattern, spec.name_group, tuple(spec.when))


def _shape_rule(doc: yamlfile.YamlDoc, i: int, shape: _ShapeSpec) -> TextRule:
    """A shape tried alone, only on text that holds one of its `when` strings."""
    _shape_pattern(doc, i, shape)
    return _text_rule(doc, "shapes", i, _TextSpec(shape.name, f"(?P<value>{shape.pattern})", when=shape.when))


def _shape_pattern(doc: yamlfile.YamlDoc, i: int, shape: _ShapeSpec) -> str:
    if doc.regex(shape.pattern, "shapes", i, "pattern").groups:
        raise doc.error("a shape is masked whole: use (?:...), not capturing groups", "shapes", i, "pattern")
    return f"(?:{shape.pattern})"


def _shapes(doc: yamlfile.YamlDoc, shapes: list[_ShapeSpec]) -> re.Pattern[str] | None:
    """The shapes without `when`, as one alternation (one search per argument)."""
    joined = [_shape_pattern(doc, i, shape) for i, shape in enumerate(shapes) if not shape.when]
    return re.compile("|".join(joined)) if joined else None


# -- redaction -------------------------------------------------------------------------------


def redact_argv(argv: list[str], p: Patterns | None = None) -> list[str]:
    """A copy of argv with secret values replaced by *** (`p`: other patterns than the file's)."""
    if not argv:
        return argv
    p = p or patterns()
    clean = p.clean
    out = _redact_words(argv, p, in_argv=True)
    for i, arg in enumerate(out):
        if arg in clean:
            continue
        out[i] = masked = redact_text(arg, p)
        if masked == arg and len(arg) <= CLEAN_MAX_LEN:
            if len(clean) >= CACHE_MAX:
                clean.clear()
            clean.add(arg)
    return out


def redact_text(text: str, p: Patterns | None = None) -> str:
    """Secrets inside one string (a shell command, a JSON or YAML document, a header)."""
    p = p or patterns()
    tried = p.text_rules_for(text)
    if tried:
        for i, rule in enumerate(p.text):
            if tried >> i & 1:
                text = _sub(rule.pattern, text, rule.name_group or None, p)
    # After the text rules: they know where a quoted or {braced} value ends, shell words do not.
    if " " in text or "\t" in text or "\n" in text:
        text = _redact_shell(text, p, 0)
    if p.shapes is not None and p.shapes.search(text):
        text = p.shapes.sub(MASK, text)
    return text


def _sub(pattern: re.Pattern[str], text: str, name_group: str | None, p: Patterns) -> str:
    """Mask the `value` group of each match that is a secret (`text` itself when none is).
    After a match that is not, the search goes on from its value, so
    `--from-literal=password=x` and `{"data": {"password": "x"}}` are still found; what those
    re-reads cost is bounded (a workload can write a=a=a=... to make them quadratic)."""
    pieces: list[str] = []
    done = pos = 0
    budget = _REREAD_BUDGET * len(text) + 4096
    while (m := pattern.search(text, pos)) is not None:
        start, end = m.span("value")
        value = text[start:end]
        if name_group is not None:
            name = m.group(name_group)
            if not p.is_secret_name(name) or p.keeps_value(name, _unquote(value)):
                budget -= m.end() - m.start()
                if budget < 0:
                    break
                pos = start if start > m.start() else m.end()
                continue
        quoted = _QUOTED.match(value)
        masked = f"{quoted.group(1)}{MASK}{quoted.group(1)}" if quoted else MASK
        pieces += (text[done:start], masked)
        done = pos = end
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _unquote(value: str) -> str:
    quoted = _QUOTED.match(value)
    return quoted.group(2) if quoted else value


def _is_option(word: str) -> bool:
    return len(word) > 1 and word[0] == "-" and (word[1].isalpha() or word[1] == "-")


def _is_text(name: str, value: str, before: str) -> bool:
    """Whether the value of NAME=value is a text the text rules mask piece by piece: a list
    (mount -o "credentials=/f,vers=3.0", ansible -e "a_password=x user=y"), or a command after
    sh -c (`before`: the argument before, in an argv) rather than one value (env 'PASSWORD=a b')."""
    if name[0] == "-":
        return False
    if _KV_LIST.search(value):
        return True
    return bool(before) and _CODE_FLAG.match(before) is not None and any(c.isspace() for c in value)


def _looks_like_command(word: str) -> bool:
    """A word that may name a program: `mysql`, `/usr/bin/mysql`, `./mysql` (not a URL,
    an image such as bitnami/mysql, an option or an assignment)."""
    return (
        bool(word)
        and word[0] != "-"
        and "=" not in word
        and ":" not in word
        and ("/" not in word or word[0] in "/.")
    )


def _mask_value(value: str, rule: ToolRule | None) -> str:
    """`value` as a rule of this kind masks it (None: a flag named like a secret, or `last`)."""
    if not value:
        return value  # ssh-keygen -N "": no secret
    if rule is not None and rule.kind == "userpass":
        user, sep, secret = value.partition(rule.sep)
        return f"{user}{sep}{MASK}" if sep and secret else value
    return MASK


class _Command:
    """The state of one command while its words are read: the tool's rules in force, and
    what an earlier word says about the next ones."""

    __slots__ = ("bulk", "last_from", "pending", "pending_name", "rules", "waiting")

    def __init__(self, rules: tuple[ToolRule, ...] = ()) -> None:
        self.rules = [r for r in rules if r.after is None]
        self.waiting = [r for r in rules if r.after is not None]
        self.pending: ToolRule | None = None  # the rule whose value the next word is
        self.pending_name = ""  # or the secret-named flag it belongs to
        self.bulk: ToolRule | None = None  # a rest or pairs rule in force
        self.last_from = -1  # a last rule: mask the final word if it comes after this index


def _redact_words(words: Sequence[str], p: Patterns, in_argv: bool) -> list[str]:
    """Pass 1 (and 3, on the words of a shell command): flags, assignments, tool rules."""
    out = list(words)
    cmd = _Command()
    for i, word in enumerate(words):
        if cmd.pending is not None or cmd.pending_name:
            rule, name = cmd.pending, cmd.pending_name
            cmd.pending, cmd.pending_name = None, ""
            if not _is_option(word):
                if rule is not None or not p.keeps_value(name, word):
                    out[i] = _mask_value(word, rule)
                continue
        if _looks_like_command(word):
            rules = p.rules_for(word)
            if rules is not None:
                cmd = _Command(rules)
                continue
        if _apply_tool_rules(cmd, i, word, out):
            continue
        if cmd.bulk is not None and not _is_option(word):
            pair = _PAIR.match(word)
            if cmd.bulk.kind == "pairs" and pair:
                out[i] = f"{pair.group(1)}={MASK}"
                continue
            if cmd.bulk.kind == "rest" and not pair:
                out[i] = MASK
                continue
        assignment = _ASSIGNMENT_ARG.match(word)
        if assignment is not None:
            name, value = assignment.groups()
            before = words[i - 1] if in_argv and i else ""
            if (
                value
                and p.is_secret_name(name)
                and not p.keeps_value(name, value)
                and not _is_text(name, value, before)
            ):
                out[i] = f"{name}={MASK}"
        elif _FLAG_ARG.match(word) and p.is_secret_name(word):
            cmd.pending_name = word
    if cmd.last_from >= 0 and len(words) - 1 > cmd.last_from and not _is_option(words[-1]):
        out[-1] = _mask_value(words[-1], None)
    return out


def _apply_tool_rules(cmd: _Command, i: int, word: str, out: list[str]) -> bool:
    """The current tool's rules on one word; True when one of them took it."""
    if cmd.waiting:
        armed = [r for r in cmd.waiting if r.after is not None and r.after.fullmatch(word)]
        if armed:
            cmd.rules += armed  # a subcommand (login, set): its flags may follow
            cmd.waiting = [r for r in cmd.waiting if r not in armed]
    if cmd.rules and any(r.until is not None and r.until.fullmatch(word) for r in cmd.rules):
        cmd.rules = [r for r in cmd.rules if r.until is None or not r.until.fullmatch(word)]
    for rule in cmd.rules:
        kind = rule.kind
        if rule.flag.fullmatch(word):
            if kind in _TAKES_ARGUMENT:
                cmd.pending = rule
            elif kind in ("rest", "pairs"):
                cmd.bulk = rule
            elif kind == "last":
                cmd.last_from = i
            return True  # keep, and a bare glued flag (mysql -p prompts)
        if rule.glued_long is None or word[:1] != "-":
            continue
        glued = rule.glued_long.match(word)  # --password=X
        if glued is None and word[1:2] != "-":
            short = rule.flag.match(word)  # -pX: a one-letter flag with its value glued on
            glued = short if short is not None and short.end() == 2 else None
        if glued is not None and glued.end() < len(word):
            out[i] = word[: glued.end()] + _mask_value(word[glued.end() :], rule)
            return True
    return False


def _redact_shell(text: str, p: Patterns, depth: int) -> str:
    """Pass 3: the word rules on each command of a shell string, quotes kept as written."""
    edits: list[tuple[int, int, str]] = []
    command: list[re.Match[str]] = []
    for token in [*_SHELL_TOKEN.finditer(text), None]:
        if token is not None and token.group("op") is None:
            command.append(token)
            continue
        if command:
            raws = [t.group() for t in command]
            values = [_shell_unquote(raw) for raw in raws]
            masked = _redact_words(values, p, in_argv=False)
            for t, raw, old, new in zip(command, raws, values, masked, strict=True):
                if new != old:
                    edits.append((t.start(), t.end(), _requote(raw, old, new)))
                elif depth < _SHELL_DEPTH and raw[:1] in "'\"" and any(c.isspace() for c in raw):
                    # bash -c 'mysql -pX' inside (the closing quote may be cut off)
                    end = t.end() - 1 if len(raw) > 1 and raw[-1] == raw[0] else t.end()
                    inner = _redact_shell(text[t.start() + 1 : end], p, depth + 1)
                    if inner != text[t.start() + 1 : end]:
                        edits.append((t.start() + 1, end, inner))
            command = []
    if not edits:
        return text
    pieces, done = [], 0
    for start, end, new in edits:
        pieces += (text[done:start], new)
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def _shell_unquote(raw: str) -> str:
    if "'" not in raw and '"' not in raw and "\\" not in raw:
        return raw
    return _QUOTE_PART.sub(_unquote_part, raw)


def _unquote_part(m: re.Match[str]) -> str:
    single, double, escaped = m.groups()
    if single is not None:
        return single
    if double is not None:
        return _DQ_ESCAPE.sub(r"\1", double)
    return escaped


def _requote(raw: str, old: str, new: str) -> str:
    """A masked shell word, written the way the original was: 'x' -> '***',
    --password="x y" -> --password="***", anything else unquoted."""
    if raw == old:
        return new
    kept = new[: -len(MASK)] if new.endswith(MASK) else new
    for prefix in ("", kept):
        rest = raw[len(prefix) :]
        if raw.startswith(prefix) and len(rest) >= 2 and rest[0] in "'\"" and rest[-1] == rest[0]:
            body = new[len(prefix) :]
            if rest[0] not in body:
                return f"{prefix}{rest[0]}{body}{rest[0]}"
    return new
