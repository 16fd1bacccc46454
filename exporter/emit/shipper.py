"""Raw events mapped, encoded and exported in a child process of their own.

Turning an event into an ECS/OCSF document and encoding it for OTLP costs ~80 us of
interpreter time; at thousands of events a second that work, on any thread of the agent,
holds the interpreter lock the alert path needs (alert p95 330 ms with 5,000 raw events/s
exported over gRPC, bench/alert_latency.py --load 5000). So when raw events go to a
collector, the agent keeps only the alert path (map, export at once) and streams raw events
to a child (`python -m exporter.emit.shipper`), which runs the same sink on the other CPU.

Agent -> child: frames on a pipe (4-byte length, then the events as JSON, the replay
format), one per ring-buffer drain. A sender thread writes them; it holds at most
`max_frames` besides the one being written: past that a live source drops the oldest
frame (counted as `events/shipper_full`), a replayed file waits. Child -> agent: every
half second, and at its end, the child's export metrics, which the agent applies to its
own (so /metrics, the collector health check and the loss summary see them as before).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
from prometheus_client import Counter, Gauge

from exporter.emit import metrics as emit_metrics
from exporter.emit.bounded import BoundedQueue
from exporter.emit.processor import DropReporter
from exporter.model import Alert, Event

log = logging.getLogger("provex.emit")

_LEN = struct.Struct("<I")
_encode_batch = msgspec.json.Encoder().encode
_decode_batch = msgspec.json.Decoder(list[Event]).decode
METRICS_EVERY_S = 0.5
CHILD_NICE = 10
# The child's metrics the agent mirrors: counters add the child's growth, gauges take its value.
MIRRORED: tuple[Counter | Gauge, ...] = (
    emit_metrics.EXPORTED,
    emit_metrics.EXPORT_DROPPED,
    emit_metrics.EXPORT_ATTEMPT_FAILURES,
    emit_metrics.EXPORT_RETRIES,
    emit_metrics.MAP_SKIPPED,
    emit_metrics.OUTPUT_ESCAPED,
    emit_metrics.EXPORT_QUEUE,
    emit_metrics.EXPORT_IN_FLIGHT,
    emit_metrics.EXPORT_RETRYING,
)


def snapshot() -> dict[str, list[tuple[dict[str, str], float]]]:
    """The mirrored metrics' samples in this process: name -> [(labels, value)]."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for metric in MIRRORED:
        for family in metric.collect():
            for sample in family.samples:
                out.setdefault(metric._name, []).append((dict(sample.labels), sample.value))
    return out


def _frames(stream: Any) -> Iterator[bytes]:
    while header := stream.read(_LEN.size):
        if len(header) < _LEN.size:
            return
        (size,) = _LEN.unpack(header)
        payload = stream.read(size)
        if len(payload) < size:
            return
        yield payload


def _send(fd: int, payload: bytes) -> None:
    view = memoryview(_LEN.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


class RawShipper:
    """The agent's side: a sink for raw events only (alerts go elsewhere)."""

    def __init__(self, output: Any, node_name: str, cluster_name: str, max_frames: int = 256) -> None:
        self.drops = DropReporter("events", output.otlp.drop_warning_interval_s)
        self._batch: list[Event] = []
        self._mirrored: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        spec = {"output": msgspec.to_builtins(output), "node_name": node_name, "cluster_name": cluster_name}
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter.emit.shipper",
                str(to_child_r),
                str(from_child_w),
                json.dumps(spec),
            ],
            pass_fds=(to_child_r, from_child_w),
        )
        os.close(to_child_r)
        os.close(from_child_w)
        # (events, frame) pairs; the sender writes one frame at a time and closes the pipe
        # when it ends, which tells the child to finish.
        self._frames: BoundedQueue[tuple[int, bytes]] = BoundedQueue(
            max_frames,
            self._send_frames,
            self.drops.drop,
            name="provex-shipper-send",
            max_batch=1,
            full_cause="shipper_full",
            size_of=lambda frame: frame[0],
            on_exit=lambda: os.close(self._to_child),
        )
        self._reader = threading.Thread(target=self._read_loop, name="provex-shipper-metrics", daemon=True)
        self._reader.start()

    # -- the Sink protocol (raw events only) ------------------------------------------
    def emit_event(self, event: Event) -> None:
        self._batch.append(event)

    def emit_alert(self, alert: Alert) -> None:
        raise TypeError("the shipper takes raw events only")

    def batch_done(self) -> None:
        if not self._batch:
            return
        frame = (len(self._batch), _encode_batch(self._batch))
        self._batch = []
        self._frames.put(frame)

    def wait_when_full(self) -> None:
        """The source can wait (a replayed file): a full frame queue holds it back."""
        self._frames.wait_when_full = True

    def flush(self, timeout_s: float = 10.0) -> None:
        self.batch_done()
        self._frames.wait_idle(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """The child exports what it has (bounded), reports its last metrics, and exits."""
        self.flush(timeout_s)
        # Frames still queued after the flush are sent all the same; should the child be
        # killed below, the sender counts them as shipper_gone.
        self._frames.close(timeout_s, drain=True)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.error("raw-event shipper did not stop in time: killed")
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=timeout_s)
        os.close(self._from_child)

    # -- threads ---------------------------------------------------------------------
    def _send_frames(self, frames: Sequence[tuple[int, bytes]]) -> None:
        for events, frame in frames:
            try:
                _send(self._to_child, frame)  # blocks while the child is busy; the GIL is free
            except OSError as exc:
                log.error("raw-event shipper gone", extra={"fields": {"error": str(exc)}})
                lost = events + sum(n for n, _ in self._frames.discard())
                self.drops.drop("shipper_gone", lost)
                return

    def _read_loop(self) -> None:
        with os.fdopen(self._from_child, "rb", closefd=False) as stream:
            for payload in _frames(stream):
                self._mirror(json.loads(payload))

    def _mirror(self, samples: dict[str, list[tuple[dict[str, str], float]]]) -> None:
        by_name = {metric._name: metric for metric in MIRRORED}
        for name, values in samples.items():
            metric = by_name.get(name)
            if metric is None:
                continue
            for labels, value in values:
                child = metric.labels(**labels) if labels else metric
                if isinstance(metric, Gauge):
                    child.set(value)
                    continue
                key = (name, tuple(sorted(labels.items())))
                delta = value - self._mirrored.get(key, 0.0)
                self._mirrored[key] = value
                if delta > 0:
                    child.inc(delta)


class SplitSink:
    """Alerts on the agent's own sink (at once), raw events through the shipper."""

    def __init__(self, alerts: Any, raw: RawShipper) -> None:
        self.alerts, self.raw = alerts, raw

    def emit_event(self, event: Event) -> None:
        self.raw.emit_event(event)

    def emit_alert(self, alert: Alert) -> None:
        self.alerts.emit_alert(alert)

    def batch_done(self) -> None:
        self.raw.batch_done()
        self.alerts.batch_done()

    def wait_when_full(self) -> None:
        self.raw.wait_when_full()
        self.alerts.wait_when_full()

    def flush(self) -> None:
        self.raw.flush()
        self.alerts.flush()

    def close(self) -> None:
        self.raw.close()
        self.alerts.close()


# -- the child ----------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    from exporter.config.schema import OutputConfig
    from exporter.emit.factory import build_sink
    from exporter.logs import setup_logging
    from exporter.runtime import tune_gc

    setup_logging()
    # Raw events are the work that can wait: on a busy node the agent's own loop, which
    # raises the alerts, gets the CPU first.
    os.nice(CHILD_NICE)
    frames_fd, metrics_fd = int(argv[0]), int(argv[1])
    spec = json.loads(argv[2])
    output = msgspec.convert(spec["output"], OutputConfig)
    sink = build_sink(
        output, node_name=spec["node_name"], cluster_name=spec["cluster_name"], inherit_env=False
    )
    lock = threading.Lock()
    done = threading.Event()

    def report() -> None:
        with lock:
            _send(metrics_fd, json.dumps(snapshot()).encode())

    def reporter() -> None:
        while not done.wait(METRICS_EVERY_S):
            report()

    threading.Thread(target=reporter, name="provex-shipper-report", daemon=True).start()
    tune_gc()
    with os.fdopen(frames_fd, "rb") as stream:
        for payload in _frames(stream):
            for event in _decode_batch(payload):
                sink.emit_event(event)
            sink.batch_done()
    sink.flush()
    sink.close()
    done.set()
    report()
    os.close(metrics_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
