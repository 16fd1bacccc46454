"""The raw sink (events and alerts as JSON lines, the replay format) and the
line writer every file output uses.

An output error never stops the agent. A write that fails (disk full, quota,
I/O error, a closed pipe) is cut back to the last whole line, so a file never
holds a partial line; what could not be written waits (bounded) and is tried
again; what cannot wait is counted in provex_export_dropped{signal,cause},
and one warning per interval says what was lost.

A closed pipe is not a loss: `provex replay | head -1` has what it asked for.
The first EPIPE sets OUTPUT_CLOSED, later lines are dropped uncounted, and the
commands stop reading and exit 0, as any Unix filter does.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from exporter.emit.metrics import EXPORT_DROPPED, EXPORTED, OUTPUT_ESCAPED, OUTPUT_WAITING
from exporter.model import Alert, Event

log = logging.getLogger("provex.emit")

FLUSH_BYTES = 8 << 10  # written out once this much is queued, even within one drain
# Room alert lines keep for themselves on the output's file system (at most 1/16 of it):
# event lines are not written into it. An alert line is a few KB.
ALERT_RESERVE_BYTES = 1 << 20
RESERVED = "No space left on device (for events: the rest is kept for alerts)"
# Set when the reader of the output (a pipe: stdout, a FIFO) went away. Process-wide, like
# the pipe it describes; the commands' loops watch it (exporter.agent.commands, live).
OUTPUT_CLOSED = threading.Event()

# errno -> the cause label of a line that could not be written.
WRITE_CAUSES = {
    errno.ENOSPC: "no_space",
    errno.EDQUOT: "quota",
    errno.EFBIG: "file_too_large",
    errno.EIO: "io_error",
    errno.EROFS: "read_only",
}


def write_cause(exc: OSError | None) -> str:
    return WRITE_CAUSES.get(exc.errno or 0, "write_error") if exc is not None else "closed"


def printable(value: Any) -> Any:
    """`value` (builtins) with text that is not UTF-8 escaped: the kernel hands over file
    names and arguments as bytes, decoded with surrogateescape, which no JSON or protobuf
    encoder accepts. b"/etc/\\xff" becomes "/etc/\\\\xff": still readable as evidence."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            try:
                return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:
                return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


def encode_json(encoder: msgspec.json.Encoder, record: object, signal: str) -> bytes:
    """One JSON document; a record with text that is not UTF-8 is written escaped, not refused."""
    try:
        return encoder.encode(record)
    except UnicodeEncodeError:
        OUTPUT_ESCAPED.labels(signal).inc()
        return encoder.encode(printable(msgspec.to_builtins(record)))


class OutputFileError(ValueError):
    """The output cannot be opened; the message names the file and why."""


def open_output(path: str) -> int:
    """A new, empty output file (an existing one is replaced), readable by its owner only."""
    where = f"output file {path} (--output, output.file)"
    try:
        # O_TRUNC: a run's output is that run's; 0600: events carry command lines.
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        raise OutputFileError(f"{where}: directory {parent} does not exist") from None
    except IsADirectoryError:
        raise OutputFileError(f"{where}: is a directory; expected a file name") from None
    except OSError as exc:
        raise OutputFileError(f"{where}: cannot open: {exc.strerror}") from None


class Line(NamedTuple):
    signal: str  # "events" | "alerts"
    data: bytes  # one line, newline included
    label: str = ""  # an alert's rule:id, named in the loss warning
    count: int = 1  # records it holds, counted when written (0: the caller counts)


class LineWriter:
    """Whole lines to a file or stdout; never a partial line in a file.

    `add` only queues; `flush` writes. When a write stops inside a line, a
    regular file is truncated back to its last whole line; on a pipe or a
    terminal the rest of that line goes first next time. While writes fail,
    at most `keep_bytes` wait for a retry (tried at most once per
    `retry_interval_s`, so a full disk costs the hot path nothing).

    Alerts keep a reserve that events cannot take, so that an output that
    recovers is not filled up again by the events held while it was down:
    event lines are written only while the file system keeps
    `alert_reserve_bytes` free (at most 1/16 of it), and hold at most 3/4 of
    `keep_bytes`. Past a bound the oldest event lines give way (counted, with
    the cause of the failure: no_space, ...) before any alert line.
    """

    def __init__(
        self,
        path: str = "",
        *,
        keep_bytes: int = 4 << 20,
        alert_reserve_bytes: int = ALERT_RESERVE_BYTES,
        retry_interval_s: float = 1.0,
        warn_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = path if path and path != "-" else "stdout"
        self._own = self.name != "stdout"
        self._fd = open_output(path) if self._own else _stdout_fd()
        try:
            self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
            self._offset = os.lseek(self._fd, 0, os.SEEK_CUR) if self._regular else 0
        except OSError:
            self._regular, self._offset = False, 0
        self.keep_bytes = keep_bytes
        self.alert_reserve_bytes = alert_reserve_bytes
        self.retry_interval_s = retry_interval_s
        self.warn_interval_s = warn_interval_s
        self._clock = clock
        self._pending: collections.deque[Line] = collections.deque()
        self._bytes = {"events": 0, "alerts": 0}  # of the lines pending, by signal
        self._head = b""  # the unwritten rest of a line cut on a pipe...
        self._head_line: Line | None = None  # ...and that line
        self._written = {s: EXPORTED.labels(s) for s in ("events", "alerts")}
        self._waiting = OUTPUT_WAITING.labels(self.name)
        self.error: OSError | None = None  # the last write error, while writes fail
        self._retry_at = 0.0
        self._unreported: collections.Counter[str] = collections.Counter()  # "signal/cause" -> lines
        self._lost_alerts: list[str] = []
        self._last_warning = -float("inf")
        self._lock = threading.Lock()
        self._closed = False
        self.reader_gone = False

    def is_terminal(self) -> bool:
        try:
            return os.isatty(self._fd)
        except OSError:
            return False

    @property
    def _pending_bytes(self) -> int:
        return self._bytes["events"] + self._bytes["alerts"]

    @property
    def _event_cap(self) -> int:
        return self.keep_bytes * 3 // 4  # the last quarter of what may wait is the alerts'

    def add(self, signal: str, data: bytes, label: str = "") -> None:
        with self._lock:
            if self.reader_gone:
                return
            if self._closed:
                self._lost(Line(signal, data, label), "closed")
                return
            self._append(Line(signal, data, label))
            if self._pending_bytes >= FLUSH_BYTES:
                self._flush(force=False)  # a whole replayed file must not pile up here
            if self.error is not None:
                self._shed()
        if self._unreported:
            self._report()

    def flush(self, force: bool = False) -> bool:
        """Write what is queued; True when nothing waits any more."""
        with self._lock:
            done = self._flush(force)
        self._report()
        return done

    def write_now(self, signal: str, data: bytes) -> OSError | None:
        """One line at once; None when it was written (on a pipe: or its rest goes first
        next time). Nothing is kept on failure: the caller counts and retries. An event
        line that would eat into the alerts' reserve on the file system is not written."""
        with self._lock:
            if self.reader_gone:
                return None
            if self._closed:
                return OSError(errno.EBADF, "output closed")
            if signal == "events" and self._room_for_events(len(data)) < len(data):
                return OSError(errno.ENOSPC, RESERVED)
            self._append(Line(signal, data, count=0))
            self._flush(force=True)
            if not self._pending:
                return None
            self._pending.clear()
            self._bytes = {"events": 0, "alerts": 0}
            self._waiting.set(0)
            return self.error or OSError(errno.EIO, "not written")

    def state(self) -> str | None:
        """None while writes go through; else why not, and what waits."""
        error = self.error
        if error is None:
            return None
        return f"{self.name}: {error.strerror or error} ({len(self._pending)} lines waiting)"

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._flush(force=True)
                unwritten = list(self._pending)
                if self._head_line is not None:
                    unwritten.insert(0, self._head_line)
                for line in unwritten:
                    self._lost(line, write_cause(self.error))
                self._pending.clear()
                self._bytes = {"events": 0, "alerts": 0}
                self._head, self._head_line = b"", None
                self._closed = True
                self._waiting.set(0)
                if self._own:
                    try:
                        os.close(self._fd)
                    except OSError as exc:  # e.g. a delayed write error of a network file system
                        log.warning(
                            "closing the output failed",
                            extra={"fields": {"file": self.name, "error": str(exc)}},
                        )
        self._report(force=True)

    # -- internals (called with the lock held) ---------------------------------------

    def _append(self, line: Line) -> None:
        self._pending.append(line)
        self._bytes[line.signal] += len(line.data)

    def _room_for_events(self, wanted: int) -> int:
        """How many of `wanted` bytes of event lines may be written now without taking the
        alerts' reserve on the file system (all of them where there is no such limit)."""
        if not self._regular or not wanted:
            return wanted
        try:
            fs = os.fstatvfs(self._fd)
        except OSError:
            return wanted
        reserve = min(self.alert_reserve_bytes, fs.f_blocks * fs.f_frsize // 16)
        return max(0, min(wanted, fs.f_bavail * fs.f_frsize - reserve))

    def _flush(self, force: bool) -> bool:
        if not self._pending and not self._head:
            return True
        if self.error is not None and not force and self._clock() < self._retry_at:
            return False
        held = self._hold_for_reserve()
        data = self._head + b"".join(line.data for line in self._pending)
        written, error = self._write(data)
        if error is not None and error.errno == errno.EPIPE:
            self._reader_left()
            return True
        done = written
        if error is not None:
            done = self._take_back(data.rfind(b"\n", 0, written) + 1, written)
        self._forget(done)
        for line in held:  # event lines the reserve kept back wait after the rest
            self._append(line)
        if error is None and held:
            error = OSError(errno.ENOSPC, RESERVED)
        if error is None:
            self._recovered()
        else:
            self._failed(error)
        self._waiting.set(len(self._pending))
        return not self._pending and not self._head

    def _hold_for_reserve(self) -> list[Line]:
        """Take the event lines that do not fit beside the alerts' reserve out of the queue
        (the first that does not fit and every event line after it; alert lines stay)."""
        room = self._room_for_events(self._bytes["events"])
        if room >= self._bytes["events"]:
            return []
        kept: collections.deque[Line] = collections.deque()
        held: list[Line] = []
        for line in self._pending:
            if line.signal == "events" and (held or len(line.data) > room):
                held.append(line)
                self._bytes["events"] -= len(line.data)
                continue
            if line.signal == "events":
                room -= len(line.data)
            kept.append(line)
        self._pending = kept
        return held

    def _write(self, data: bytes) -> tuple[int, OSError | None]:
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, view[written:])
        except OSError as exc:
            return written, exc
        finally:
            self._offset += written
        return written, None

    def _reader_left(self) -> None:
        """The reader closed the pipe: what it did not read it did not want."""
        self.reader_gone = True
        OUTPUT_CLOSED.set()
        self._pending.clear()
        self._bytes = {"events": 0, "alerts": 0}
        self._head, self._head_line = b"", None
        self._waiting.set(0)
        log.info("output closed by its reader: stopping", extra={"fields": {"file": self.name}})

    def _take_back(self, whole: int, written: int) -> int:
        """A write stopped after `written` bytes, inside a line: remove the cut line
        from a regular file (back to `whole`); elsewhere it is finished later."""
        if written == whole or not self._regular:
            return written
        cut = self._offset - (written - whole)
        try:
            os.ftruncate(self._fd, cut)
            os.lseek(self._fd, cut, os.SEEK_SET)
        except OSError as exc:  # cannot take it back: finish the line on the next write
            log.debug("truncate failed", extra={"fields": {"file": self.name, "error": str(exc)}})
            return written
        self._offset = cut
        return whole

    def _forget(self, done: int) -> None:
        """Take what reached the output (the first `done` bytes of head + queue) off the queue."""
        if self._head_line is not None:
            if done < len(self._head):
                self._head = self._head[done:]
                return
            done -= len(self._head)
            self._written[self._head_line.signal].inc(self._head_line.count)
            self._head, self._head_line = b"", None
        while self._pending and done > 0:
            line = self._pending.popleft()
            self._bytes[line.signal] -= len(line.data)
            if len(line.data) > done:  # cut on a pipe: its rest goes first next time
                self._head, self._head_line = line.data[done:], line
                return
            done -= len(line.data)
            self._written[line.signal].inc(line.count)

    def _failed(self, error: OSError) -> None:
        if self.error is None:
            log.warning(
                "output write failed: lines wait and are retried",
                extra={"fields": {"file": self.name, "error": error.strerror or str(error)}},
            )
        self.error = error
        self._retry_at = self._clock() + self.retry_interval_s
        self._shed()

    def _recovered(self) -> None:
        if self.error is not None:
            log.info("output writable again", extra={"fields": {"file": self.name}})
            self.error = None

    def _shed(self) -> None:
        """Over a bound while failing: event lines past their share (3/4 of `keep_bytes`)
        go, down to 3/4 of it; over `keep_bytes` in all, event lines go, then alert lines,
        down to 3/4 of it. Always the oldest first."""
        if self._bytes["events"] > self._event_cap:
            self._drop_oldest("events", self._event_cap * 3 // 4)
        if self._pending_bytes > self.keep_bytes:
            target = self.keep_bytes * 3 // 4
            self._drop_oldest("events", max(0, target - self._bytes["alerts"]))
            self._drop_oldest("alerts", target)

    def _drop_oldest(self, signal: str, until: int) -> None:
        """The oldest `signal` lines are lost until that signal holds at most `until` bytes."""
        kept: collections.deque[Line] = collections.deque()
        for line in self._pending:
            if line.signal == signal and self._bytes[signal] > until:
                self._bytes[signal] -= len(line.data)
                self._lost(line, write_cause(self.error))
            else:
                kept.append(line)
        self._pending = kept

    def _lost(self, line: Line, cause: str) -> None:
        if not line.count:
            return  # the caller counts it
        EXPORT_DROPPED.labels(line.signal, cause).inc(line.count)
        self._unreported[f"{line.signal}/{cause}"] += line.count
        if line.label and len(self._lost_alerts) < 20:
            self._lost_alerts.append(line.label)

    def _report(self, force: bool = False) -> None:
        """At most one warning per interval about lines lost since the last one."""
        if not self._unreported:
            return
        with self._lock:
            now = self._clock()
            if not self._unreported or (not force and now - self._last_warning < self.warn_interval_s):
                return
            self._last_warning = now
            fields: dict[str, object] = {
                "file": self.name,
                "not_written": dict(self._unreported),
                "interval_s": self.warn_interval_s,
            }
            if self.error is not None:
                fields["error"] = self.error.strerror or str(self.error)
            if self._lost_alerts:
                fields["alerts_not_written"] = list(self._lost_alerts)
            self._unreported.clear()
            self._lost_alerts.clear()
        log.warning("output lines not written", extra={"fields": fields})


def _stdout_fd() -> int:
    try:
        sys.stdout.flush()  # whatever was printed before goes first
        return sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # stdout replaced by an object without a file
        return 1


class LineSink:
    """What the sinks that write lines on the caller's thread share (JSON lines, text)."""

    dependency = "output"
    in_order = True
    writer: LineWriter

    def batch_done(self) -> None:
        self.writer.flush()  # a local write: cheap, and readers (jq, tail -f) see each drain at once

    def wait_when_full(self) -> None:
        pass  # lines are written on the caller's thread: there is no queue to wait for

    def degraded(self) -> str | None:
        return self.writer.state()

    def flush(self) -> None:
        self.writer.flush(force=True)

    def close(self) -> None:
        self.writer.close()


class JsonLinesSink(LineSink):
    """Writes one JSON object per line to a file or stdout.

    Events are written in the replay format (exporter.model.encode_event);
    alerts as {"alert": {...}} so a reader can tell them apart, each after the
    event that completed it (`in_order`).
    """

    def __init__(self, path: str = "", alerts: bool = True, writer: LineWriter | None = None) -> None:
        self.writer = writer or LineWriter(path)
        self._encoder = msgspec.json.Encoder()
        self._alerts = alerts

    def emit_event(self, event: Event) -> None:
        self.writer.add("events", encode_json(self._encoder, event, "events") + b"\n")

    def emit_alert(self, alert: Alert) -> None:
        if not self._alerts:
            return
        line = encode_json(self._encoder, {"alert": alert}, "alerts") + b"\n"
        self.writer.add("alerts", line, label=f"{alert.rule_id}:{alert.id}")
        self.writer.flush()  # alerts never wait behind a buffer
