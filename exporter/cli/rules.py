"""`provex rules list | lint | test | survey | fields | export`: the functions behind the
subcommands, and their wiring. The fixtures `provex rules test` replays are described in
exporter/agent/fixtures.py; `export` calls the SIEM content (exporter/siem)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TextIO

from exporter.agent.fixtures import fixture_results
from exporter.config.schema import CorrelateConfig
from exporter.correlate.errors import RulesError
from exporter.correlate.loader import DEFAULT_RULES_DIR, RuleSet, load_rules
from exporter.correlate.loader import survey as _survey
from exporter.model import Alert
from exporter.siem import TARGET_NAMES
from exporter.taxonomy.fields import fields_markdown


def _paths(paths: Sequence[str | Path]) -> list[str | Path]:
    return list(paths) if paths else [DEFAULT_RULES_DIR]


def lint(
    paths: Sequence[str | Path],
    out: TextIO = sys.stdout,
    strict: bool = False,
    skip_unsupported: bool = False,
) -> int:
    """Load and compile the rules as `provex run` does; print every error, rule provex
    cannot evaluate and warning with file:line. 0 = the set loads as `provex run` would
    load it: a rule that cannot run here is an error (`run` refuses it) unless
    `skip_unsupported` (--skip-unsupported-rules); `strict` also fails on warnings and
    skipped rules."""
    rs = _load(paths, out)
    if rs is None:
        return 1
    for err in rs.skipped:
        print(f"{'SKIP' if skip_unsupported else 'ERROR'} {err}", file=out)
    for err in rs.warnings:
        print(f"WARNING {err}", file=out)
    if rs.skipped and not skip_unsupported:
        print(
            f"{len(rs.skipped)} rule(s) cannot run here: `provex run` refuses them"
            " (--skip-unsupported-rules starts without them)",
            file=out,
        )
        return 1
    counts = (
        f"{len(rs.rules)} rules, {len(rs.correlations)} correlations in {len(rs.files)} files;"
        f" {len(rs.skipped)} skipped (not evaluable here), {len(rs.warnings)} warning(s)"
    )
    if strict and (rs.skipped or rs.warnings):
        print(f"FAIL (--strict) {counts}", file=out)
        return 1
    print(f"OK {counts}", file=out)
    return 0


def _load(paths: Sequence[str | Path], out: TextIO) -> RuleSet | None:
    """The rule set under `paths`; None (every error printed) when it is refused."""
    try:
        return load_rules(_paths(paths))
    except RulesError as exc:
        for err in exc.errors:
            print(f"ERROR {err}", file=out)
        print(f"{len(exc.errors)} error(s); nothing loaded", file=out)
        return None


def run_fixtures(
    paths: Sequence[str | Path], fixtures: str | Path | None = None, out: TextIO = sys.stdout
) -> int:
    """Replay every rule file's positive and negative fixtures. 0 = all as expected."""
    paths = _paths(paths)
    try:
        rs = load_rules(paths)
    except RulesError as exc:
        for err in exc.errors:
            print(f"ERROR {err}", file=out)
        print("0 passed, 1 failed", file=out)
        return 1
    passed = failed = 0
    for result in fixture_results(rs, paths, fixtures):
        passed, failed = passed + result.ok, failed + (not result.ok)
        print(result.line(), file=out)
    print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed else 0


def survey(paths: Iterable[str | Path], out: TextIO = sys.stdout) -> int:
    """Print what of a foreign Sigma corpus loads and evaluates, grouped by cause (JSON)."""
    problem = missing_paths(paths)
    if problem:
        print(f"provex rules survey: {problem}", file=sys.stderr)
        return 2
    result = _survey(paths)
    print(json.dumps(result.summary(), indent=2), file=out)
    return 0


def missing_paths(paths: Iterable[str | Path]) -> str | None:
    """A one-line reason when a named rule file or directory does not exist."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        return f"{', '.join(missing)}: no such file or directory (expected Sigma rule files or directories)"
    return None


def list_rules(config: CorrelateConfig, out: TextIO = sys.stdout) -> int:
    """`provex rules list`: the rules the agent loads with this config, like `falco -L`."""
    from exporter.correlate.engine import build_correlator

    try:
        ruleset = build_correlator(config).ruleset
    except RulesError as exc:
        for err in exc.errors:
            print(f"ERROR {err}", file=out)
        print(f"{len(exc.errors)} error(s); nothing loaded", file=out)
        return 1
    rows = [(r.name, r.level, ",".join(r.techniques), r.title) for r in ruleset.rules if r.generate]
    rows += [(c.name, c.level, ",".join(c.techniques), c.title) for c in ruleset.correlations]
    width = max([len(r[0]) for r in rows] + [4])
    tech = max([len(r[2]) for r in rows] + [10])
    print(f"{'NAME'.ljust(width)}  {'LEVEL':<13}  {'TECHNIQUES'.ljust(tech)}  TITLE", file=out)
    for name, level, techniques, title in sorted(rows):
        print(f"{name.ljust(width)}  {level:<13}  {techniques.ljust(tech)}  {title}", file=out)
    steps = sum(not r.generate for r in ruleset.rules)
    print(
        f"{len(rows)} rules alert ({len(ruleset.correlations)} of them chains over {steps} steps);"
        f" {len(ruleset.skipped)} skipped as not evaluable here (`provex rules lint` says why)",
        file=out,
    )
    return 0


def add_rules_subcommands(
    subparsers: argparse._SubParsersAction,
    config_flags: Callable[[argparse.ArgumentParser], None] = lambda p: None,
) -> None:
    """Adds `rules {list,lint,test,survey,fields,export}`. Each parser sets `func(args) -> int`,
    except `list`, which needs the agent's config: it sets `with_config(args, config) -> int`
    and gets its config flags from `config_flags`."""
    rules = subparsers.add_parser("rules", help="list, check, test and survey Sigma rules")
    sub = rules.add_subparsers(dest="rules_command", required=True)
    p = sub.add_parser("list", help="the rules the agent loads (default rules, --rules-dir, --config)")
    config_flags(p)
    p.set_defaults(func=None, with_config=lambda a, config: list_rules(config.correlate))
    p = sub.add_parser("lint", help="load and compile rules; report errors with file:line")
    p.add_argument("paths", nargs="*", help="rule files or directories (default: the shipped rules)")
    p.add_argument("--strict", action="store_true", help="also fail on warnings (and skipped rules)")
    p.add_argument(
        "--skip-unsupported-rules",
        action="store_true",
        help="as `provex run --skip-unsupported-rules`: list the rules provex cannot evaluate, do not fail",
    )
    p.set_defaults(
        func=lambda a: (
            _checked(a.paths, "lint")
            or lint(a.paths, strict=a.strict, skip_unsupported=a.skip_unsupported_rules)
        )
    )
    p = sub.add_parser("test", help="replay each rule file's positive and negative fixtures")
    p.add_argument("paths", nargs="*", help="rule files or directories (default: the shipped rules)")
    p.add_argument(
        "--fixtures", metavar="DIR", help="fixture root: DIR/<rule-file-stem>/{positive,negative}/"
    )
    p.set_defaults(func=lambda a: _checked(a.paths, "test") or run_fixtures(a.paths, a.fixtures))
    p = sub.add_parser("survey", help="count which rules of a Sigma corpus provex can evaluate, and why not")
    p.add_argument("paths", nargs="+", help="rule files or directories")
    p.set_defaults(func=lambda a: survey(a.paths))
    p = sub.add_parser("fields", help="print the field taxonomy rules see (markdown)")
    p.set_defaults(func=lambda a: (print(fields_markdown(), end=""), 0)[1])
    p = sub.add_parser("export", help="convert rules to SIEM queries (EQL, ES|QL, SPL, LogQL); see siem/")
    p.add_argument("--target", required=True, choices=TARGET_NAMES)
    p.add_argument("paths", nargs="*", help="rule files or directories (default: the shipped rules)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=lambda a: _checked(a.paths, "export") or export(a.target, a.paths, a.output))


def export(target: str, paths: Sequence[str], output: str | None) -> int:
    """`provex rules export`: the rules as SIEM queries (exporter.siem.export.run)."""
    try:
        from exporter.siem.export import run
    except ImportError as exc:  # the optional extra is missing
        print(f"ERROR {exc}: install the SIEM backends with `pip install 'provex[siem]'`", file=sys.stderr)
        return 2
    return run(target, paths, output)


def _checked(paths: Sequence[str], command: str) -> int:
    """2 (and the reason on stderr) when a named path is missing; 0 to go on."""
    problem = missing_paths(paths)
    if problem:
        print(f"provex rules {command}: {problem}", file=sys.stderr)
        return 2
    return 0


# ---------------------------------------------------------------- provex story


def add_story_subcommand(
    subparsers: argparse._SubParsersAction,
    config_flags: Callable[[argparse.ArgumentParser], None],
    default_file: str,
) -> None:
    """Adds `story ALERT_ID [--from FILE] [--format json|graphml]` (it needs the agent's config
    for the rules a recording is replayed with: it sets `with_config(args, config) -> int`)."""
    p = subparsers.add_parser(
        "story",
        help="an alert's story (its processes, files, endpoints, steps) as node-link JSON or GraphML",
        description="Print the story of alert ALERT_ID (the full id, or a prefix naming one alert): "
        "from the alerts of FILE (provex's JSON lines, as `provex replay` and `provex run` write "
        "them), or, when FILE has no such alert but has events, from replaying them through the rules.",
    )
    p.add_argument("alert_id", metavar="ALERT_ID", help="the alert's id (or a unique prefix of it)")
    p.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        default=default_file,
        help="JSON lines: alerts, or events to replay (- = stdin; default: the bundled recording)",
    )
    p.add_argument(
        "--format",
        dest="story_format",
        choices=["json", "graphml"],
        default="json",
        help="node-link JSON or GraphML",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    config_flags(p)
    p.set_defaults(func=None, with_config=lambda a, config: run_story(a, config.correlate))


def run_story(args: argparse.Namespace, config: CorrelateConfig, out: TextIO | None = None) -> int:
    """`provex story`: 0 and the story; 2 and one line on stderr when there is none."""
    from exporter.correlate.engine import build_correlator, engine_problem
    from exporter.correlate.story import graphml, node_link_json

    out = out or sys.stdout

    def fail(problem: str) -> int:
        print(f"provex story: {problem}", file=sys.stderr)
        return 2

    try:
        alerts, events, skipped = _read_story_source(args.source)
    except OSError as exc:
        return fail(f"{args.source}: {exc.strerror or exc}")
    found = _find_alert(alerts, args.alert_id)
    if (found is None or found.story is None) and events:
        problem = engine_problem(config)
        if problem:
            return fail(f"correlate.engine native: {problem}")
        try:
            correlator = build_correlator(config)
        except RulesError as exc:
            return fail(f"the rules cannot be loaded: {exc.errors[0]}")
        replayed = [a for e in events for a in correlator.process(e)] + correlator.drain()
        found = _find_alert(replayed, args.alert_id) or found
        alerts = alerts or replayed
    if isinstance(found, str):
        return fail(found)
    if found is None or found.story is None:
        ids = ", ".join(a.id[:12] for a in alerts[:5]) + (", ..." if len(alerts) > 5 else "")
        what = f"{len(alerts)} alert(s): {ids}" if alerts else "no alert"
        note = f"; {skipped} line(s) were not JSON alerts or events" if skipped else ""
        return fail(f"no alert {args.alert_id!r} with a story in {args.source} ({what}{note})")
    text = (
        node_link_json(found.story).decode() + "\n" if args.story_format == "json" else graphml(found.story)
    )
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            return fail(f"{args.output}: {exc.strerror or exc}")
    else:
        out.write(text)
    return 0


def _read_story_source(source: str) -> tuple[list[Alert], list, int]:
    """The alerts and the events of a JSON-lines file, and how many lines were neither."""
    import msgspec

    from exporter.model import decode_event

    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    alerts: list[Alert] = []
    events = []
    skipped = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            data = msgspec.json.decode(line)
            if isinstance(data, dict) and "alert" in data:
                alerts.append(msgspec.convert(data["alert"], Alert))
            else:
                events.append(decode_event(line))
        except (msgspec.DecodeError, msgspec.ValidationError):
            skipped += 1
    return alerts, events, skipped


def _find_alert(alerts: list[Alert], wanted: str) -> Alert | str | None:
    """The alert whose id is `wanted` or starts with it; a reason when the prefix names several."""
    exact = [a for a in alerts if a.id == wanted]
    if exact:
        return exact[-1]
    prefixed = {a.id: a for a in alerts if wanted and a.id.startswith(wanted)}
    if len(prefixed) > 1:
        return f"{wanted!r} names {len(prefixed)} alerts ({', '.join(sorted(prefixed)[:3])}, ...): give more of the id"
    return next(iter(prefixed.values()), None)
