"""What each `provex` subcommand does, once its config is loaded.

Exit codes: 0 everything went through; 1 the agent could not run (probes);
2 bad input (config, a file that cannot be read or written);
3 (EXIT_LOST) the run completed but lost records: one error line says which and why;
130 a replay interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from typing import Any

from exporter.agent.build import StartupError, build_stages
from exporter.agent.losses import Ledger
from exporter.config import Config
from exporter.emit.jsonlines import OUTPUT_CLOSED
from exporter.runtime import tune_gc
from exporter.source.replay import Progress, ReplayError, ReplaySource, count_lines

log = logging.getLogger("provex.agent")

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's code for SIGINT


def replay(args: argparse.Namespace, config: Config, ruleset: Any = None) -> int:
    from exporter.logs import status_line

    ledger = Ledger()
    status = status_line()
    progress = Progress(status.show, count_lines(args.file)) if status is not None else None
    source = ReplaySource(args.file, on_line=progress)
    try:
        source.open()
    except ReplayError as exc:
        log.error("cannot open replay file", extra={"fields": {"file": args.file, "error": str(exc)}})
        return EXIT_BAD_INPUT
    try:
        # Events replay as recorded: no enrichment from this host.
        stages = build_stages(config, enrich=False, correlate=True, inherit_otlp_env=False, ruleset=ruleset)
    except StartupError as exc:
        log.error("cannot start", extra={"fields": {"error": str(exc)}})
        return EXIT_BAD_INPUT
    stages.sink.wait_when_full()  # a file can wait: a full export queue holds the reader back
    tune_gc()
    started = time.monotonic()
    interrupted = False
    try:
        # `provex replay | head`: once the reader has gone, reading on is pointless.
        events = itertools.takewhile(lambda _: not OUTPUT_CLOSED.is_set(), source)
        stages.pipeline.feed(events, time.time_ns())
        stages.pipeline.finish()
    except KeyboardInterrupt:  # Ctrl-C: what was read still goes out (bounded), then say where we were
        interrupted = True
    finally:
        stages.close()
        if status is not None:
            status.clear()
    if interrupted:
        log.warning(
            "replay interrupted",
            extra={
                "fields": {"file": args.file, "lines_read": source.lines_read, "exit_code": EXIT_INTERRUPTED}
            },
        )
        ledger.finish("replay", lines_read=source.lines_read)
        return EXIT_INTERRUPTED
    reader_gone = OUTPUT_CLOSED.is_set()
    log.info(
        "replay finished" if not reader_gone else "replay stopped: the output's reader has gone",
        extra={
            "fields": {
                "file": args.file,
                "lines": source.lines_read,
                "events": source.events,
                "skipped": source.skipped_count,
                "seconds": round(time.monotonic() - started, 3),
            }
        },
    )
    if not source.events and not reader_gone:  # an empty file, or one with no event in it
        what = (
            f"no line is a provex event ({source.skipped_count} of {source.lines_read} lines skipped)"
            if source.skipped_count
            else f"no event in it ({source.lines_read} lines)"
        )
        log.error(
            f"{args.file}: {what}: expected JSON lines written by `provex record`",
            extra={
                "fields": {"file": args.file, "skipped": source.skipped_count, "exit_code": EXIT_BAD_INPUT}
            },
        )
        return EXIT_BAD_INPUT
    return ledger.finish("replay", lines_read=source.lines_read)


def dispatch(args: argparse.Namespace, config: Config, ruleset: Any = None) -> int:
    """Run a command whose inputs were checked (`ruleset`: the rules preflight loaded)."""
    if args.command == "replay":
        return replay(args, config, ruleset)
    if args.command in ("run", "record"):
        from exporter.agent import live

        return live.run(args, config, ruleset)
    raise SystemExit(f"unknown command {args.command}")
