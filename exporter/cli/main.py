"""The `provex` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from exporter import __version__
from exporter.config import Config, ConfigError, config_to_yaml, load_config

# Dedicated flags and the config key each one sets (applied after --set).
CONFIG_FLAGS: list[tuple[str, str, str]] = [
    ("--output", "output.file", "write to FILE instead of stdout"),
    ("--schema", "output.schema", "raw | ecs | ocsf"),
    ("--otlp-endpoint", "output.otlp.endpoint", "OTLP collector URL (default $OTEL_EXPORTER_OTLP_ENDPOINT)"),
    ("--otlp-protocol", "output.otlp.protocol", "grpc | http/protobuf"),
    ("--health-addr", "server.health_addr", "HOST:PORT serving /healthz, /readyz, /metrics"),
    ("--kubeconfig", "enrich.kubeconfig", "kubeconfig file (default $KUBECONFIG, then in-cluster)"),
    ("--node-name", "enrich.node_name", "this node's name (default $NODE_NAME)"),
    ("--rules-dir", "correlate.rules_dirs", "a directory of user Sigma rules (repeatable)"),
    ("--disable-rule", "correlate.disabled_rules", "a rule id, name or title to switch off (repeatable)"),
    ("--monitor", "probes.monitor", "containers | all (all includes the host's own processes)"),
]
_LIST_KEYS = {"correlate.rules_dirs", "correlate.disabled_rules"}


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
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    for flag, key, text in CONFIG_FLAGS:
        if flag in flags:
            dest = flag.lstrip("-").replace("-", "_")
            action = "append" if key in _LIST_KEYS else "store"
            parser.add_argument(flag, dest=dest, action=action, help=f"{text} (config: {key})")


def build_config(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    for flag, key, _ in CONFIG_FLAGS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is None:
            continue
        if key in _LIST_KEYS:
            overrides.append(f"{key}=[{', '.join(repr(v) for v in value)}]")
        else:
            overrides.append(f"{key}={value}")
    if args.log_level:
        overrides.append(f"log.level={args.log_level}")
    return load_config(args.config, overrides)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provex",
        description="eBPF security exporter: container escape and lateral movement, as OTLP logs",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the agent on this host (live, needs root)")
    _add_common(run, [f for f, _, _ in CONFIG_FLAGS])
    run.add_argument("--print-config", action="store_true", help="print the effective config and exit")

    record = sub.add_parser("record", help="record live events to JSON lines (the replay format)")
    _add_common(record, ["--health-addr", "--kubeconfig", "--node-name", "--monitor"])
    record.add_argument("--output", "-o", required=True, metavar="FILE", help="where to write events")
    record.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS")

    replay = sub.add_parser("replay", help="run recorded events through the pipeline")
    _add_common(
        replay,
        ["--output", "--schema", "--otlp-endpoint", "--otlp-protocol", "--rules-dir", "--disable-rule"],
    )
    replay.add_argument("file", metavar="FILE", help="JSON-lines file written by `provex record` (- = stdin)")

    from exporter.correlate.cli import add_rules_subcommands

    add_rules_subcommands(sub)
    from exporter.scenarios.cli import add_scenario_subcommands

    add_scenario_subcommands(sub)
    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"provex {__version__}")
        return 0
    if hasattr(args, "func"):  # subcommands that need no agent config (rules ...)
        return int(args.func(args))
    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"provex: config refused: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "print_config", False):
        sys.stdout.write(config_to_yaml(config))
        return 0

    from exporter.logs import setup_logging

    setup_logging(config.log.level)
    from exporter.agent import commands

    return commands.dispatch(args, config)
