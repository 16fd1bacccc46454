"""Replay source: the JSON-lines files `provex record` writes.

A corrupt line is reported with its line number, counted, and skipped; the
rest of the file still plays.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
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


class ReplaySource:
    """Yields the events of a recorded file (or stdin for "-"), in file order."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.lines_read = 0
        self.skipped: list[tuple[int, str]] = []  # (line number, reason)

    def _open(self) -> IO[bytes]:
        if self.path == "-":
            return sys.stdin.buffer
        return open(self.path, "rb")  # closed in __iter__

    def __iter__(self) -> Iterator[Event]:
        handle = self._open()
        try:
            for number, line in enumerate(handle, start=1):
                self.lines_read = number
                if not line.strip():
                    continue
                try:
                    yield decode_event(line)
                except msgspec.ValidationError as exc:
                    self._skip(number, "invalid", str(exc))
                except msgspec.DecodeError as exc:
                    self._skip(number, "corrupt", str(exc))
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()

    def _skip(self, number: int, cause: str, reason: str) -> None:
        self.skipped.append((number, reason))
        REPLAY_SKIPPED.labels(cause).inc()
        log.warning(
            "skipped replay line",
            extra={"fields": {"file": self.path, "line": number, "cause": cause, "reason": reason}},
        )
