"""Replay source: the JSON-lines files `provex record` writes.

A corrupt line is reported with its line number, counted, and skipped; the
rest of the file still plays. A file is a source that can wait: nothing
downstream may drop from it (the export queues hold the reader back instead).
"""

from __future__ import annotations

import errno
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import msgspec
from prometheus_client import Counter

from exporter.metrics import REGISTRY
from exporter.model import Event, decode_event

log = logging.getLogger("provex.source")

REPLAY_SKIPPED = Counter(
    "provex_replay_lines_skipped",
    "Replay lines that could not be decoded, by cause",
    ["cause"],
    registry=REGISTRY,
)

SKIP_WARNINGS_MAX = 20  # one warning per skipped line up to this many; the rest are counted


class ReplayError(Exception):
    """The replay file cannot be read; the message names it and says why."""


class ReplaySource:
    """Yields the events of a recorded file (or stdin for "-"), in file order.

    `on_line(lines_read)` is called every `progress_every` lines (progress display).
    """

    def __init__(
        self,
        path: str | Path,
        on_line: Callable[[int], None] | None = None,
        progress_every: int = 1024,
    ) -> None:
        self.path = str(path)
        self.lines_read = 0
        self.events = 0
        self.skipped: list[tuple[int, str]] = []  # (line number, reason), the first SKIP_WARNINGS_MAX
        self.skipped_count = 0
        self.on_line = on_line
        self.progress_every = progress_every
        self._handle: IO[bytes] | None = None

    def open(self) -> None:
        """Open the file now, so that a missing or unreadable one is an error before anything runs."""
        if self._handle is not None or self.path == "-":
            return
        try:
            if Path(self.path).is_dir():
                raise IsADirectoryError(
                    errno.EISDIR, "is a directory; expected a file written by `provex record`"
                )
            self._handle = open(self.path, "rb")  # noqa: SIM115 (closed in __iter__)
        except OSError as exc:
            raise ReplayError(f"{self.path}: {exc.strerror or exc}") from None

    def __iter__(self) -> Iterator[Event]:
        self.open()
        handle = self._handle if self._handle is not None else sys.stdin.buffer
        self._handle = None
        try:
            for number, line in enumerate(handle, start=1):
                self.lines_read = number
                if self.on_line is not None and number % self.progress_every == 0:
                    self.on_line(number)
                if not line.strip():
                    continue
                try:
                    event = decode_event(line)
                except msgspec.ValidationError as exc:
                    self._skip(number, "invalid", str(exc))
                    continue
                except msgspec.DecodeError as exc:
                    self._skip(number, "corrupt", str(exc))
                    continue
                self.events += 1
                yield event
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()
        if self.on_line is not None:
            self.on_line(self.lines_read)

    def _skip(self, number: int, cause: str, reason: str) -> None:
        self.skipped_count += 1
        REPLAY_SKIPPED.labels(cause).inc()
        if len(self.skipped) >= SKIP_WARNINGS_MAX:
            return  # a binary file is thousands of bad lines: count them, name the first ones
        self.skipped.append((number, reason))
        log.warning(
            "skipped replay line",
            extra={"fields": {"file": self.path, "line": number, "cause": cause, "reason": reason[:200]}},
        )


def count_lines(path: str, chunk: int = 1 << 20) -> int | None:
    """Lines of a regular file (the total for progress); None for stdin."""
    if path == "-":
        return None
    try:
        with open(path, "rb") as f:
            lines, last = 0, b"\n"
            while block := f.read(chunk):
                lines += block.count(b"\n")
                last = block[-1:]
    except OSError:
        return None
    return lines + (last != b"\n")


class Progress:
    """events/s and done/total on a status line, at most every `interval_s`."""

    def __init__(
        self,
        show: Callable[[str], None],
        total: int | None,
        interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.show = show
        self.total = total
        self.interval_s = interval_s
        self._clock = clock
        self._start = clock()
        self._next = self._start

    def __call__(self, done: int) -> None:
        now = self._clock()
        if now < self._next and done != self.total:
            return
        self._next = now + self.interval_s
        self.show(self.text(done, now - self._start))

    def text(self, done: int, elapsed_s: float) -> str:
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        if self.total:
            share = 100.0 * min(done, self.total) / self.total
            return f"replay: {done:,}/{self.total:,} events ({share:.0f}%), {rate:,.0f} events/s"
        return f"replay: {done:,} events, {rate:,.0f} events/s"
