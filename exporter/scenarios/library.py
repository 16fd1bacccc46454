"""The scenario library: attack and benign workloads as data (library/*.yaml).

Each file holds one class of scenarios (`class:`), `defaults:` merged into
every scenario of the file, and the `scenarios:` list. A scenario is a
/bin/sh script run in a throwaway busybox container, plus what its Pod
declares (namespace, service account, hostPath volumes backed by temp dirs
with fake contents, a projected token). Attacks name the rule that must fire
and the ATT&CK technique the alert must carry; benign ones must raise nothing.

Scripts may use ${API_IP} ${API_PORT} (the stand-in API server), ${HTTP_PORT}
(the local payload/health server) and ${HOST_PID} (a host process to enter). A
scenario with `own_network: true` runs in a network namespace of its own with
test-only addresses: ${POD_IP} (the Pod's, as the API server knows it),
${PEER_IP} (an address standing for another Pod) and ${NET_API_IP} (the API
server's address there: the script listens on it, at ${API_PORT}).
A scenario's `image` lays out files, symlinks and hard links before its container
starts (in its own copy of the rootfs, or, under a host_paths mount, in that
volume's stand-in): what an image ships or a node already holds, which the agent
never saw being made.

A held-out list may expect rules the default set does not have yet: it declares
them under `expected_new_rules` (name -> the ATT&CK techniques the alert must
carry). Such a scenario loads, and is judged missed, until a default rule of that
name exists; from then on the real rule is checked and used.
A bad file is refused whole, each problem with file:line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from exporter import yamlfile
from exporter.errors import InputError, InputErrors, Source
from exporter.yamlfile import YamlFileError

LIBRARY_DIR = Path(__file__).resolve().parent / "library"
PLACEHOLDERS = frozenset({"API_IP", "API_PORT", "HTTP_PORT", "HOST_PID", "POD_IP", "PEER_IP", "NET_API_IP"})
OWN_NETWORK_PLACEHOLDERS = frozenset({"POD_IP", "PEER_IP", "NET_API_IP"})
# ${UPPER_CASE} is ours; shell's own $var and ${lower} pass through untouched.
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")  # fits a Pod name with a suffix
_RULE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Mounted over when the container starts: an image entry there would never be seen.
_MOUNTED_AT_START = ("/proc", "/dev", "/tmp", "/sys")


class ScenarioError(InputErrors):
    """One or more problems in scenario files, each located `file:line`."""


class HostPath(msgspec.Struct, forbid_unknown_fields=True):
    host: str  # the real host path the Pod declares as a hostPath volume
    mount: str  # where the container sees it
    # Fake contents of the temp dir standing in for `host`: relative path -> text,
    # or "@busybox" for an executable copy of busybox-static (a "host tool").
    files: dict[str, str] = {}
    read_only: bool = True


class ImageEntry(msgspec.Struct, forbid_unknown_fields=True):
    """One thing that exists before the container starts: a file (`content`, "@busybox" for a
    copy of busybox-static), a symlink to `symlink`, or a hard link to the file the
    container would see at `hardlink`."""

    path: str  # as the container sees it
    content: str | None = None
    symlink: str = ""
    hardlink: str = ""
    executable: bool = False


class ScenarioSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One scenario as its file writes it (the file's `defaults` merged in)."""

    name: str
    script: str
    description: str = ""
    kind: Literal["attack", "benign"] = "attack"
    rule: str = ""  # attack: rule name (or id) that must fire
    also: list[str] = []  # attack: other rules it raises by design (a chain that holds another)
    technique: str = ""  # attack: ATT&CK id the alert must carry
    canary: bool = False  # `provex verify` runs this one for its rule
    namespace: str = "scenarios"
    service_account: str = "default"
    labels: dict[str, str] = {}
    host_paths: list[HostPath] = []
    token: str = ""  # container path of a projected service-account token ("" = none)
    privileged: bool = False
    host_pid: bool = False
    own_network: bool = False  # a network namespace of its own, with test-only addresses
    image: list[ImageEntry] = []  # laid out before the container starts
    family: str = ""  # the evasion class a held-out form belongs to (reports group by it)


class Scenario(ScenarioSpec, kw_only=True):
    """A loaded scenario: its spec, and where it came from."""

    klass: str = ""  # the file's class
    file: str = ""
    line: int = 0
    # Rules it names that its file declares as expected but no default rule is yet:
    # name -> the techniques the file says the alert must carry.
    pending_rules: dict[str, list[str]] = {}

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def placeholders(self) -> set[str]:
        return set(_PLACEHOLDER.findall(self.script))

    def render(self, values: dict[str, str]) -> str:
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.script)


@dataclass(frozen=True)
class RuleRef:
    uid: str
    name: str
    title: str
    techniques: tuple[str, ...]
    pending: bool = False  # declared by a scenario file, not a default rule yet (never fires)


def pending_rule(name: str, techniques: Iterable[str]) -> RuleRef:
    """A rule a scenario file expects and the default set does not have: no alert carries its
    id, so its scenarios are judged missed."""
    return RuleRef(
        f"pending:{name}", name, f"{name} (expected, not a default rule yet)", tuple(techniques), True
    )


def rule_table(scenarios: Iterable[Scenario], rules: dict[str, RuleRef] | None = None) -> dict[str, RuleRef]:
    """The default rules, plus the pending rules the scenarios expect: what judges them."""
    table = dict(default_rules() if rules is None else rules)
    for s in scenarios:
        for name, techniques in s.pending_rules.items():
            table.setdefault(name, pending_rule(name, techniques))
    return table


def default_rules() -> dict[str, RuleRef]:
    """Alerting rules of the default rule set, by name and by id."""
    from exporter.correlate.loader import DEFAULT_RULES_DIR, load_rules

    ruleset = load_rules([DEFAULT_RULES_DIR])
    out: dict[str, RuleRef] = {}
    for r in [*[r for r in ruleset.rules if r.generate], *ruleset.correlations]:
        ref = RuleRef(r.uid, r.name, r.title, tuple(r.techniques))
        out[r.name] = out[r.uid] = ref
    return out


class NewRule(msgspec.Struct, forbid_unknown_fields=True):
    """A rule a held-out list expects before the default set has it."""

    techniques: Annotated[list[str], msgspec.Meta(min_length=1)]
    description: str = ""


class _ScenarioFile(msgspec.Struct, forbid_unknown_fields=True, rename={"klass": "class"}):
    klass: Annotated[str, msgspec.Meta(min_length=1)]
    scenarios: Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1)]
    defaults: dict[str, Any] = {}
    expected_new_rules: dict[str, dict[str, Any]] = {}  # name -> NewRule, each checked at its line


def load_file(path: str | Path, rules: dict[str, RuleRef] | None = None) -> list[Scenario]:
    try:
        doc = yamlfile.load(path)
        spec = doc.convert(_ScenarioFile)
    except YamlFileError as exc:
        raise ScenarioError([exc]) from None
    rules = default_rules() if rules is None else rules
    problems: list[InputError] = []
    out: list[Scenario] = []
    # A declared rule that has become a default rule is that rule from then on.
    pending: dict[str, RuleRef] = {}
    for name in spec.expected_new_rules:
        try:
            declared = doc.convert(NewRule, "expected_new_rules", name)
        except YamlFileError as exc:
            problems.append(exc)
            continue
        if not _RULE_NAME.match(name):
            where = Source(doc.file, doc.line("expected_new_rules", name))
            problems.append(InputError(f"rule name {name!r}: snake_case", where))
        elif name not in rules:
            pending[name] = pending_rule(name, declared.techniques)
    table = {**pending, **rules}
    for i, item in enumerate(spec.scenarios):
        line = doc.line("scenarios", i)
        merged = {**spec.defaults, **item}
        if spec.klass == "benign":
            merged.setdefault("kind", "benign")
        try:
            given = doc.convert(ScenarioSpec, "scenarios", i, data=merged)
        except YamlFileError as exc:
            problems.append(InputError(f"scenario {item.get('name', '?')!r}: {exc.problem}", exc.source))
            continue
        fields = msgspec.structs.asdict(given)
        expects = {
            name: list(pending[name].techniques) for name in (given.rule, *given.also) if name in pending
        }
        scenario = Scenario(**fields, klass=spec.klass, file=doc.file, line=line, pending_rules=expects)
        problems += [InputError(p, Source(doc.file, line)) for p in _check(scenario, table)]
        out.append(scenario)
    if problems:
        raise ScenarioError(problems)
    return out


def _check(s: Scenario, rules: dict[str, RuleRef]) -> list[str]:
    problems = []
    if not _NAME.match(s.name):
        problems.append(f"name {s.name!r}: lowercase letters, digits and '-', at most 42 characters")
    unknown = s.placeholders() - PLACEHOLDERS
    if unknown:
        problems.append(f"{s.name}: unknown placeholders {sorted(unknown)} (known: {sorted(PLACEHOLDERS)})")
    if s.placeholders() & OWN_NETWORK_PLACEHOLDERS and not s.own_network:
        problems.append(f"{s.name}: ${{POD_IP}}, ${{PEER_IP}} and ${{NET_API_IP}} need own_network: true")
    if s.kind == "attack":
        if s.rule not in rules:
            problems.append(
                f"{s.name}: rule {s.rule!r} is not an alerting default rule"
                " (nor declared under expected_new_rules)"
            )
        elif s.technique and not any(
            t == s.technique or t.startswith(s.technique + ".") for t in rules[s.rule].techniques
        ):
            problems.append(
                f"{s.name}: rule {s.rule} carries {list(rules[s.rule].techniques)}, not {s.technique}"
            )
        for name in s.also:
            if name not in rules or name == s.rule:
                problems.append(f"{s.name}: also {name!r} is not another alerting default rule")
    elif s.rule or s.canary or s.also:
        problems.append(f"{s.name}: a benign scenario names no rule and is no canary")
    for hp in s.host_paths:
        if not hp.host.startswith("/") or not hp.mount.startswith("/"):
            problems.append(f"{s.name}: host_paths need absolute host and mount paths")
        for rel in hp.files:
            if rel.startswith("/") or ".." in rel.split("/"):
                problems.append(f"{s.name}: host_paths file {rel!r} must be relative, without '..'")
    if s.token and not s.token.startswith("/"):
        problems.append(f"{s.name}: token must be an absolute container path")
    problems += [f"{s.name}: {p}" for entry in s.image for p in _image_problems(entry)]
    token_dir = s.token.rsplit("/", 1)[0]
    if s.token and any(e.path.startswith(token_dir + "/") for e in s.image):
        problems.append(f"{s.name}: image entries under {token_dir} are hidden by the token's mount")
    return problems


def _image_problems(entry: ImageEntry) -> list[str]:
    kinds = [k for k, v in (("content", entry.content is not None), ("symlink", entry.symlink),
                            ("hardlink", entry.hardlink)) if v]  # fmt: skip
    problems = []
    if len(kinds) != 1:
        problems.append(f"image {entry.path!r}: give exactly one of content, symlink, hardlink (got {kinds})")
    if not entry.path.startswith("/") or ".." in entry.path.split("/"):
        problems.append(f"image {entry.path!r}: an absolute container path without '..'")
    elif any(entry.path == m or entry.path.startswith(m + "/") for m in _MOUNTED_AT_START):
        problems.append(f"image {entry.path!r}: the container mounts over {_MOUNTED_AT_START} when it starts")
    if entry.hardlink and (not entry.hardlink.startswith("/") or ".." in entry.hardlink.split("/")):
        problems.append(
            f"image {entry.path!r}: hardlink target must be an absolute container path without '..'"
        )
    return problems


def load_library(paths: Iterable[str | Path] | None = None) -> list[Scenario]:
    """Every scenario of the given files (default: the shipped library), names unique."""
    files = sorted(LIBRARY_DIR.glob("*.yaml")) if paths is None else [Path(p) for p in paths]
    rules = default_rules()
    problems: list[InputError] = []
    out: list[Scenario] = []
    for path in files:
        try:
            out += load_file(path, rules)
        except ScenarioError as exc:
            problems += exc.errors
    seen: dict[str, str] = {}
    for s in out:
        if s.name in seen:
            problems.append(
                InputError(f"scenario name {s.name!r} already used at {seen[s.name]}", Source(s.file, s.line))
            )
        seen[s.name] = s.where
    if problems:
        raise ScenarioError(problems)
    return out


def canaries(scenarios: list[Scenario]) -> dict[str, Scenario]:
    """rule name -> its canary scenario."""
    return {s.rule: s for s in scenarios if s.kind == "attack" and s.canary}
