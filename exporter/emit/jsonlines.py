"""The raw sink: events (and alerts) as JSON lines, the replay format."""

from __future__ import annotations

import sys
import threading
from typing import IO

import msgspec

from exporter.model import Alert, Event


class JsonLinesSink:
    """Writes one JSON object per line to a file or stdout.

    Events are written in the replay format (exporter.model.encode_event);
    alerts as {"alert": {...}} so a reader can tell them apart.
    """

    def __init__(self, path: str = "", alerts: bool = True) -> None:
        self._own = bool(path) and path != "-"
        self._out: IO[bytes] = open(path, "ab") if self._own else sys.stdout.buffer  # noqa: SIM115
        self._encoder = msgspec.json.Encoder()
        self._alerts = alerts
        self._lock = threading.Lock()

    def emit_event(self, event: Event) -> None:
        line = self._encoder.encode(event) + b"\n"
        with self._lock:
            self._out.write(line)

    def emit_alert(self, alert: Alert) -> None:
        if not self._alerts:
            return
        line = self._encoder.encode({"alert": alert}) + b"\n"
        with self._lock:
            self._out.write(line)
            self._out.flush()  # alerts never wait behind a buffer

    def batch_done(self) -> None:
        self.flush()  # a local write: cheap, and readers (jq, tail -f) see each drain at once

    def flush(self) -> None:
        with self._lock:
            self._out.flush()

    def close(self) -> None:
        self.flush()
        if self._own:
            self._out.close()
