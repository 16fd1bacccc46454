"""What each `provex` subcommand does, once its config is loaded."""

from __future__ import annotations

import argparse
import logging
import time

from exporter.agent.build import StartupError, build_stages
from exporter.config import Config
from exporter.source.replay import ReplaySource

log = logging.getLogger("provex.agent")


def replay(args: argparse.Namespace, config: Config) -> int:
    source = ReplaySource(args.file)
    try:
        # Events replay as recorded: no enrichment from this host.
        stages = build_stages(config, enrich=False, correlate=True, inherit_otlp_env=False)
    except StartupError as exc:
        log.error("cannot start", extra={"fields": {"error": str(exc)}})
        return 2
    try:
        stages.pipeline.feed(source, time.time_ns())
        stages.pipeline.finish()
    except FileNotFoundError as exc:
        log.error("cannot open replay file", extra={"fields": {"file": args.file, "error": str(exc)}})
        return 2
    finally:
        stages.close()
    if source.skipped:
        log.warning(
            "replay finished with skipped lines",
            extra={"fields": {"file": args.file, "skipped": len(source.skipped), "lines": source.lines_read}},
        )
    return 0


def dispatch(args: argparse.Namespace, config: Config) -> int:
    if args.command == "replay":
        return replay(args, config)
    if args.command in ("run", "record"):
        from exporter.agent import live

        return live.run(args, config)
    raise SystemExit(f"unknown command {args.command}")
