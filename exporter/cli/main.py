"""The `provex` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from exporter import __version__
from exporter.config import Config, config_to_yaml, load_config
from exporter.config.loader import Origins
from exporter.config.output import plan_output
from exporter.errors import InputError, render
from exporter.resources import sample_recording

# Dedicated flags and the config key each one sets (applied after --set).
CONFIG_FLAGS: list[tuple[str, str, str]] = [
    ("--output", "output.file", "write to FILE instead of stdout (replaced if it exists)"),
    ("--schema", "output.schema", "auto | raw | ecs | ocsf (auto: ecs with an OTLP endpoint, else raw)"),
    (
        "--format",
        "output.format",
        "auto | json | text | otlp-json, for stdout or --output (auto: text on a terminal, else json)",
    ),
    ("--alerts-only", "output.raw_events", "ship alerts only, not every raw event (output.raw_events=false)"),
    (
        "--otlp-endpoint",
        "output.otlp.endpoint",
        "OTLP collector URL; means OTLP export (run: default $OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT)",
    ),
    ("--otlp-protocol", "output.otlp.protocol", "grpc | http/protobuf"),
    (
        "--health-addr",
        "server.health_addr",
        "HOST:PORT serving /healthz, /readyz, /metrics (:PORT = 127.0.0.1)",
    ),
    ("--kubeconfig", "enrich.kubeconfig", "kubeconfig file (default $KUBECONFIG, then in-cluster)"),
    ("--node-name", "enrich.node_name", "this node's name (default $NODE_NAME)"),
    ("--rules-dir", "correlate.rules_dirs", "a directory of user Sigma rules (repeatable)"),
    ("--disable-rule", "correlate.disabled_rules", "a rule id, name or title to switch off (repeatable)"),
    ("--monitor", "probes.monitor", "containers | all (all includes the host's own processes)"),
    (
        "--skip-unsupported-rules",
        "correlate.skip_unsupported_rules",
        "start without the rules provex cannot evaluate (named in the log) instead of refusing",
    ),
]
_LIST_KEYS = {"correlate.rules_dirs", "correlate.disabled_rules"}
# Flags without a value: the value they set.
_SWITCHES = {"--alerts-only": "false", "--skip-unsupported-rules": "true"}
_RULE_FLAGS = ["--rules-dir", "--disable-rule", "--skip-unsupported-rules"]


def _add_common(parser: argparse.ArgumentParser, flags: Sequence[str] = ()) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", help="YAML config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set probes.ring_buffer_pages=256 (repeatable)",
    )
    parser.add_argument(
        "--log-level", metavar="LEVEL", help="debug | info | warning | error (config: log.level)"
    )
    for flag, key, text in CONFIG_FLAGS:
        if flag in flags:
            dest = flag.lstrip("-").replace("-", "_")
            if flag in _SWITCHES:
                parser.add_argument(flag, dest=dest, action="store_const", const=_SWITCHES[flag], help=text)
                continue
            action = "append" if key in _LIST_KEYS else "store"
            parser.add_argument(flag, dest=dest, action=action, help=f"{text} (config: {key})")


def _flags(args: argparse.Namespace) -> list[tuple[str, str, object]]:
    out: list[tuple[str, str, object]] = []
    for flag, key, _ in CONFIG_FLAGS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            out.append((flag, key, value))
    if getattr(args, "log_level", None):
        out.append(("--log-level", "log.level", args.log_level))
    return out


def build_config(args: argparse.Namespace, origins: Origins | None = None) -> Config:
    """The effective config of a command: file, variables, --set and flags, with the
    output decided (schema, OTLP endpoint: see exporter.config.output). InputError
    (InputErrors: all of them) for what cannot be used; `origins` learns where each
    key was typed."""
    origins = origins if origins is not None else Origins()
    config = load_config(args.config, list(args.overrides), flags=_flags(args), origins=origins)
    if args.command not in ("run", "replay"):
        return config
    plan = plan_output(
        config.output,
        inherit_env=args.command == "run",
        labels=origins.labels(),
        terminal=_stdout_is_terminal(),
    )
    return msgspec.structs.replace(config, output=plan.output)


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def _replay_file_problem(args: argparse.Namespace) -> InputError | None:
    replay_file = getattr(args, "file", None)
    if args.command != "replay" or replay_file == "-":
        return None
    path = Path(replay_file)
    if path.is_dir():
        return InputError(
            "is a directory", f"replay file {replay_file}", "expected a recording (JSON lines) or -"
        )
    if not path.exists():
        return InputError(
            "no such file", f"replay file {replay_file}", "expected a recording (JSON lines) or -"
        )
    return None


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provex",
        description="eBPF security exporter: container escape and lateral movement, as OTLP logs",
    )
    parser.add_argument("--version", action="version", version=f"provex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the agent on this host (live, needs root)")
    _add_common(run, [f for f, _, _ in CONFIG_FLAGS])
    run.add_argument("--print-config", action="store_true", help="print the effective config and exit")

    record = sub.add_parser("record", help="record live events to JSON lines (the replay format)")
    _add_common(record, ["--health-addr", "--kubeconfig", "--node-name", "--monitor"])
    record.add_argument("--output", "-o", required=True, metavar="FILE", help="where to write events")
    record.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS")

    replay = sub.add_parser(
        "replay",
        help="run recorded events through the rules and the output (default: the bundled sample)",
    )
    _add_common(
        replay,
        [
            "--output",
            "--schema",
            "--format",
            "--alerts-only",
            "--otlp-endpoint",
            "--otlp-protocol",
            *_RULE_FLAGS,
        ],
    )
    replay.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        default=str(sample_recording()),
        help="JSON-lines file written by `provex record` (- = stdin; default: the bundled sample)",
    )

    from exporter.cli.rules import add_rules_subcommands, add_story_subcommand

    add_rules_subcommands(sub, config_flags=lambda p: _add_common(p, _RULE_FLAGS))
    add_story_subcommand(sub, lambda p: _add_common(p, _RULE_FLAGS), str(sample_recording()))
    from exporter.cli.scenarios import add_scenario_subcommands

    add_scenario_subcommands(sub)
    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"provex {__version__}")
        return 0
    if getattr(args, "func", None) is not None:  # subcommands that need no agent config (rules ...)
        return int(args.func(args))
    origins = Origins()
    try:
        config = build_config(args, origins)
    except InputError as exc:
        print(render(exc), file=sys.stderr)
        return 2
    if getattr(args, "with_config", None) is not None:  # rules list: the rules the agent would load
        return int(args.with_config(args, config))
    from exporter.agent.build import preflight

    try:  # every input, before a probe is compiled or a thread started
        problem = _replay_file_problem(args)
        if problem is not None:
            raise problem
        output = args.output if args.command == "record" else config.output.file
        ruleset = preflight(config, args.command, labels=origins.labels(), output=output)
    except InputError as exc:
        print(render(exc), file=sys.stderr)
        return 2
    if getattr(args, "print_config", False):  # after the checks: a config printed is one that starts
        sys.stdout.write(config_to_yaml(config))
        return 0

    from exporter.logs import setup_logging

    setup_logging(config.log.level)
    from exporter.agent import commands

    return commands.dispatch(args, config, ruleset)
