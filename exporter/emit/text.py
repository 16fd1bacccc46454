"""The terminal sink (`--format text`): one line per event or alert, for a person.

An alert reads: time, ALERT, level, title [techniques], where (namespace/Pod/
container), the process (comm[pid]) and what it touched; then its story, one
indented line per evidence event. An event line has the same columns. Each
event comes before the alerts it caused (`in_order`). Colour only on a
terminal, and never when NO_COLOR is set (https://no-color.org).
"""

from __future__ import annotations

import datetime as dt
import errno
import os
from collections.abc import Mapping

from exporter.emit.jsonlines import LineSink, LineWriter, printable
from exporter.model import Alert, Event, EventType, EvidenceRef
from exporter.model.linux import AF_UNIX, WRITE_FLAGS, namespace_names

ARGV_MAX = 120  # characters of a command line shown; the JSON forms keep it all

# Sigma level -> ANSI colour (SGR) on a terminal.
LEVEL_COLOURS = {"critical": "1;31", "high": "31", "medium": "33", "low": "36", "informational": "37"}
DIM, BOLD = "2", "1"
STDIO = {0: "stdin", 1: "stdout", 2: "stderr"}


def want_colour(terminal: bool, environ: Mapping[str, str] = os.environ) -> bool:
    """Colour for a terminal, unless NO_COLOR is set to anything but the empty string."""
    return terminal and not environ.get("NO_COLOR", "")


def when(ts_ns: int) -> str:
    """UTC, to the millisecond: 2026-12-03T20:33:35.602Z."""
    stamp = dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def where(event: Event | None) -> str:
    """namespace/Pod/container; a container id without a Pod; `host` outside containers."""
    container = event.container if event is not None else None
    if container is None:
        return "host"
    pod = container.pod
    if pod is not None and pod.name:
        return f"{pod.namespace}/{pod.name}/{container.name or container.id[:12]}"
    return f"container {container.id[:12]}"


def process(event: Event | None) -> str:
    if event is None:
        return "-"
    return f"{event.comm or '?'}[{event.pid}]"


def _path(event: Event) -> str:
    path = event.resolved_path or event.path
    if event.host_path and event.host_path != path:
        path += f" (host {event.host_path})"
    return path


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def touched(event: Event) -> str:
    """What the syscall acted on, in a few words."""
    t = event.type
    if t is EventType.EXEC:
        text = _path(event)
        if event.argv:
            argv = " ".join(event.argv)
            text += "  " + (argv if len(argv) <= ARGV_MAX else argv[: ARGV_MAX - 1] + "…")
        if event.interpreted_path:
            text += f"  (runs {event.interpreted_path})"
        if event.origin:
            text += "  (file from the network)"
        return text
    if t is EventType.OPEN:
        return f"{'write' if event.flags & WRITE_FLAGS else 'read'} {_path(event)}"
    if t is EventType.CONNECT:
        if event.family == AF_UNIX:
            return f"-> unix {event.path}"
        text = f"-> {_endpoint(event.daddr, event.dport)}"
        if event.dest_is_apiserver:
            text += " (API server)"
        if event.peer_pod is not None:
            text += f" (Pod {event.peer_pod.namespace}/{event.peer_pod.name})"
        return text
    if t is EventType.ACCEPT:
        text = f"<- {_endpoint(event.saddr, event.sport)}" if event.saddr else "<- ?"
        if event.peer_pod is not None:
            text += f" (Pod {event.peer_pod.namespace}/{event.peer_pod.name})"
        return text
    if t is EventType.MOUNT:
        return " ".join(
            x for x in (event.source, "on", event.target, event.fstype and f"type {event.fstype}") if x
        )
    if t in (EventType.SETNS, EventType.UNSHARE):
        names = ",".join(namespace_names(event.nstype, setns=t is EventType.SETNS)) or "-"
        return f"fd {event.fd} {names}" if t is EventType.SETNS else names
    if t is EventType.FORK:
        return f"child {event.child_pid}"
    if t in (EventType.LINK, EventType.RENAME):
        return f"{event.resolved_source or event.source} -> {_path(event)}"
    if t is EventType.DUP:
        return f"fd {event.fd} -> {STDIO.get(event.ret, event.ret)}"
    if t in (EventType.CHDIR, EventType.CHROOT):
        return _path(event) or f"fd {event.fd}"
    return _path(event)


def failed(event: Event) -> str:
    """`failed ENOENT` for a syscall that failed (connect's EINPROGRESS still connects)."""
    if event.ret >= 0 or event.type in (EventType.FORK, EventType.EXIT, EventType.DUP):
        return ""
    name = errno.errorcode.get(-event.ret, str(-event.ret))
    return "" if name == "EINPROGRESS" else f"failed {name}"


def story(ref: EvidenceRef) -> str:
    """One evidence event of an alert."""
    if ref.destination:
        obj = f"-> {ref.destination}"
    elif ref.peer:
        obj = f"<- {ref.peer}"
    else:
        obj = ref.path
    if ref.type is EventType.MOUNT:
        obj = " ".join(x for x in (ref.source, "on", ref.path, ref.fstype and f"type {ref.fstype}") if x)
    if ref.host_path and ref.host_path != ref.path:
        obj = f"{obj} (host {ref.host_path})"
    step = f"  [{ref.step}]" if ref.step else ""
    return f"    {when(ref.ts_ns)}  {ref.type.value:<7} pid {ref.pid}  {obj or ref.syscall}{step}"


class TextSink(LineSink):
    """Sink (exporter.agent.pipeline.Sink) writing text lines to a file or stdout."""

    def __init__(self, path: str = "", colour: bool | None = None, writer: LineWriter | None = None) -> None:
        self.writer = writer or LineWriter(path)
        if colour is None:
            colour = want_colour(self.writer.is_terminal())
        self.colour = colour

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def _line(self, text: str) -> bytes:
        return (printable(text) + "\n").encode("utf-8")

    def emit_event(self, event: Event) -> None:
        parts = [when(event.ts_ns), f"{event.type.value:<7}", where(event), process(event), touched(event)]
        problem = failed(event)
        if problem:
            parts.append(problem)
        text = "  ".join(p for p in parts if p)
        self.writer.add("events", self._line(self._paint(DIM, text) if self.colour else text))

    def emit_alert(self, alert: Alert) -> None:
        event = alert.event
        level = self._paint(LEVEL_COLOURS.get(alert.level, BOLD), f"{alert.level:<8}")
        title = self._paint(BOLD, alert.rule_title)
        techniques = f" [{','.join(alert.techniques)}]" if alert.techniques else ""
        parts = [when(alert.decisive_ts_ns), self._paint(BOLD, "ALERT"), level, title + techniques]
        parts += [where(event), process(event), touched(event) if event is not None else ""]
        if alert.followup_of:
            parts.append(f"(+{alert.suppressed} more since {alert.followup_of[:12]})")
        lines = ["  ".join(p for p in parts if p)] + [story(ref) for ref in alert.evidence]
        data = b"".join(self._line(line) for line in lines)
        self.writer.add("alerts", data, label=f"{alert.rule_id}:{alert.id}")
        self.writer.flush()  # alerts never wait behind a buffer
