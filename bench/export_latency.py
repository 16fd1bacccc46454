"""Alert export latency: enqueue (Sink.emit_alert) -> OTLP receiver, same run, JSON out.

(a) provex's alert path (its own export thread, exported at once), over gRPC
    and HTTP/protobuf;
(b) baseline: the OpenTelemetry SDK's default BatchLogRecordProcessor with
    the same OTLP gRPC exporter and the same mapped documents.
Also: what emit_alert costs the caller, and how many raw events per second
the caller can map and enqueue. Receivers are the tests' stand-in on 127.0.0.1.

    PYTHONPATH=. python bench/export_latency.py [--alerts 300] [--gap-ms 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

from bench.helpers.otlp_receiver import OtlpReceiver
from bench.helpers.records import AGENT, records
from exporter.config.schema import OtlpConfig, OutputConfig
from exporter.emit import build_resource, build_sink
from exporter.emit.otlp import routing_attributes
from exporter.mapping import Mapper
from exporter.model import Alert, Event


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(latencies_ns: list[int], caller_ns: list[int]) -> dict[str, float]:
    ms = [v / 1e6 for v in latencies_ns]
    us = [v / 1e3 for v in caller_ns]
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 3),
        "p95_ms": round(pct(ms, 95), 3),
        "p99_ms": round(pct(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "caller_p50_us": round(pct(us, 50), 1),
        "caller_p99_us": round(pct(us, 99), 1),
    }


def alerts(n: int) -> list[Alert]:
    template = records()["alert_token_exfil"]
    fields = {f: getattr(template, f) for f in template.__struct_fields__}
    return [Alert(**{**fields, "id": f"bench-{i}"}) for i in range(n)]


def collect(receiver: OtlpReceiver, sent: dict[str, int], key) -> list[int]:  # type: ignore[no-untyped-def]
    got = receiver.wait_for(len(sent), timeout_s=60)
    return [r.arrival_ns - sent[key(r.body)] for r in got if key(r.body) in sent]


def send_timed(
    batch: list[Alert], gap_s: float, send: Callable[[Alert], None]
) -> tuple[dict[str, int], list[int]]:
    """Send each alert, `gap_s` apart: when each one left (by id) and what each send cost
    the caller (perf_counter ns)."""
    sent, caller = {}, []
    for alert in batch:
        t0 = time.perf_counter_ns()
        send(alert)
        caller.append(time.perf_counter_ns() - t0)
        sent[alert.id] = t0
        time.sleep(gap_s)
    return sent, caller


def run_provex(protocol: str, batch: list[Alert], gap_s: float) -> dict[str, float]:
    with OtlpReceiver(protocol) as receiver:
        config = OutputConfig(schema="ecs", otlp=OtlpConfig(endpoint=receiver.endpoint, protocol=protocol))  # type: ignore[arg-type]
        sink = build_sink(config, **AGENT)
        sink.emit_alert(alerts(1)[0])  # connect before measuring
        receiver.wait_for(1)
        receiver.received.clear()
        sent, caller = send_timed(batch, gap_s, sink.emit_alert)
        latencies = collect(receiver, sent, lambda body: body["event"]["id"])
        sink.close()
    return summary(latencies, caller)


def run_sdk_batch(batch: list[Alert], gap_s: float) -> dict[str, float]:
    """The SDK's defaults: BatchLogRecordProcessor (schedule delay 1 s, batch 512)."""
    mapper = Mapper("ecs", **AGENT)
    with OtlpReceiver("grpc") as receiver:
        provider = LoggerProvider(resource=build_resource(AGENT["node_name"], AGENT["cluster_name"]))
        provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(endpoint=receiver.endpoint, insecure=True))
        )
        logger = provider.get_logger("provex.alerts")

        def emit(alert: Alert) -> None:
            doc = mapper.map(alert)
            assert doc is not None
            logger.emit(
                LogRecord(
                    timestamp=alert.decisive_ts_ns,
                    severity_number=SeverityNumber.ERROR,
                    body=doc.body,
                    attributes=routing_attributes(alert, doc, "ecs"),
                )
            )

        sent, caller = send_timed(batch, gap_s, emit)
        latencies = collect(receiver, sent, lambda body: body["event"]["id"])
        provider.shutdown()
    return summary(latencies, caller)


def run_event_throughput(n: int) -> dict[str, float]:
    """Raw events through the sink: what enqueueing costs the caller, and how many events a
    second the export worker maps and encodes to OTLP/protobuf (exporter a no-op)."""

    class Discard:
        encoding = "protobuf"
        name = "discard"

        def export(self, request: bytes, records: int, signal: str) -> bool:
            return True

        def shutdown(self) -> None:
            pass

    events = [r for r in records().values() if isinstance(r, Event)]
    out = {}
    for schema in ("ecs", "ocsf"):
        config = OutputConfig(schema=schema, otlp=OtlpConfig(queue_size=n + 1))  # type: ignore[arg-type]
        sink = build_sink(config, exporter=Discard(), **AGENT)
        t0 = time.perf_counter()
        for i in range(n):
            sink.emit_event(events[i % len(events)])
        enqueued = time.perf_counter() - t0
        sink.flush()
        elapsed = time.perf_counter() - t0
        sink.close()
        out[f"{schema}_events_per_s"] = round(n / elapsed)
        out[f"{schema}_caller_us_per_event"] = round(enqueued / n * 1e6, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=5.0, help="pause between alerts")
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    batch = alerts(args.alerts)
    gap = args.gap_ms / 1000
    result = {
        "alerts": args.alerts,
        "gap_ms": args.gap_ms,
        "goal": {"p95_ms": 10, "p99_ms": 25},
        "provex_alert_path_grpc": run_provex("grpc", batch, gap),
        "provex_alert_path_http": run_provex("http/protobuf", batch, gap),
        "baseline_sdk_batch_grpc": run_sdk_batch(batch, gap),
        "raw_events_caller": run_event_throughput(args.events),
    }
    ours, base = result["provex_alert_path_grpc"], result["baseline_sdk_batch_grpc"]
    result["p95_speedup_vs_baseline"] = round(base["p95_ms"] / ours["p95_ms"], 1)
    result["meets_goal_grpc"] = ours["p95_ms"] <= 10 and ours["p99_ms"] <= 25
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
