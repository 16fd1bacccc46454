"""Structured logs for the agent itself: one JSON object per line on stderr.

Stages log through `logging.getLogger("provex.<stage>")` and pass fields with
`extra={"fields": {...}}`; they end up as top-level keys of the JSON line.
The libraries the agent runs on (the OpenTelemetry SDK and its exporters,
gRPC, urllib3) log through the same handler, so the stream stays JSON; their
repeats are rate-limited (one line per message per interval, with a count of
what was held back), since an exporter retrying every second against a dead
collector would otherwise drown everything else.

On a terminal, a command may keep one status line (progress) under the log
lines; a log line never lands in the middle of it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import TextIO

# Loggers of libraries whose records must come out as JSON lines too.
LIBRARY_LOGGERS = ("opentelemetry", "grpc", "urllib3", "requests")
LIBRARY_REPEAT_INTERVAL_S = 10.0


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class Throttle:
    """At most one thing per key per interval, counting what it held back in between:
    the one rate limit behind every repeated warning of the agent."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def admit(self, key: Hashable = "") -> int | None:
        """None: held back (the key went through less than an interval ago). Otherwise it
        goes through, and this is how many were held back since it last did."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._held.pop(key, 0)


def _with_held(fields: dict[str, object] | None, held: int) -> dict[str, object]:
    fields = dict(fields or {})
    if held:
        fields["repeats_held_back"] = held
    return fields


class RepeatFilter(logging.Filter):
    """At most one record per (logger, message template) per interval; the next one
    that passes says how many were held back."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._throttle = Throttle(interval_s, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        held = self._throttle.admit((record.name, str(record.msg)))
        if held is None:
            return False
        if held:
            record.fields = _with_held(getattr(record, "fields", None), held)
        return True


class RateLimitedWarning:
    """A warning at most once per cause per interval; the next one says how many were
    held back (a metric beside it counts every one)."""

    def __init__(
        self, logger: logging.Logger, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self._throttle = Throttle(interval_s, clock)

    def __call__(self, cause: str, msg: str, **fields: object) -> bool:
        held = self._throttle.admit(cause)
        if held is None:
            return False
        self.logger.warning(msg, extra={"fields": _with_held({"cause": cause, **fields}, held)})
        return True


class StatusLine:
    """One line of status (e.g. progress) kept at the bottom of a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.text = ""
        self.lock = threading.RLock()

    def show(self, text: str) -> None:
        with self.lock:
            self.text = text
            self.stream.write("\r\033[K" + text)
            self.stream.flush()

    def clear(self) -> None:
        with self.lock:
            if self.text:
                self.stream.write("\r\033[K")
                self.stream.flush()
            self.text = ""


class JsonLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that steps around the status line, if one is shown."""

    status: StatusLine | None = None

    def emit(self, record: logging.LogRecord) -> None:
        status = self.status
        if status is None or not status.text:
            super().emit(record)
            return
        with status.lock:
            self.stream.write("\r\033[K")
            super().emit(record)
            self.stream.write(status.text)
            self.stream.flush()


_handler: JsonLineHandler | None = None


def setup_logging(level: str = "info") -> None:
    global _handler
    handler = JsonLineHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("provex")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # Libraries: warnings and worse (their info is chatter), as JSON, repeats held back.
    library_level = max(logging.WARNING, logging.getLevelName(level.upper()))
    repeats = RepeatFilter(LIBRARY_REPEAT_INTERVAL_S)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library_handler = JsonLineHandler(sys.stderr)
        library_handler.setFormatter(JsonFormatter())
        library_handler.addFilter(repeats)
        library.handlers[:] = [library_handler]
        library.setLevel(library_level)
        library.propagate = False
    # gRPC's C core writes plain text to stderr on its own: only its errors, which are
    # also reported (as JSON) by the exporter that got them.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    _handler = handler


def status_line() -> StatusLine | None:
    """A status line on stderr when stderr is a terminal (never in a pipe or a file) and
    stdout is not: records printed on the terminal would run into it, and show progress."""
    stream = sys.stderr
    try:
        if not stream.isatty() or sys.stdout.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    status = StatusLine(stream)
    for handler in _json_handlers():
        handler.status = status
    return status


def _json_handlers() -> list[JsonLineHandler]:
    handlers = []
    for name in ("provex", *LIBRARY_LOGGERS):
        handlers += [h for h in logging.getLogger(name).handlers if isinstance(h, JsonLineHandler)]
    return handlers
