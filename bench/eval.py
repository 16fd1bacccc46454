"""Detection evaluation: every library scenario, N trials each, in a seeded random interleaving.

The real agent (`provex run --schema ecs --otlp-endpoint ...`) watches real
runc containers registered as Pods with the stand-in API server and exports
alerts and raw events over OTLP/gRPC to the test receiver. Scored per
scenario, class and overall:

* detection rate (the expected rule alerted on the trial's container);
* in-window detection at 1 s / 2 s / 10 s and latency p50/p95/p99, from the
  decisive syscall (the alert's time_unix_nano, the decisive event's ts_ns)
  to the alert's arrival at the receiver;
* technique correctness (the alert carries the scenario's ATT&CK technique)
  and enrichment correctness (the alert names the trial's Pod and namespace);
* false positives with their denominators: benign trials with any alert, and
  alerts per benign event; alerts of another rule on attack trials;
* lost events: the kernel's lost_* counters and the exporter's drops.

Writes eval.json, eval.md and latency_cdf.png to --out and prints the JSON.
Root, runc and busybox-static needed.

    PYTHONPATH=. python bench/eval.py --trials 20 --seed 7 --out out/eval
    PYTHONPATH=. python bench/eval.py --trials 100 --scenario shadow-cat   # one scenario alone
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.helpers.otlp_receiver import OtlpReceiver, Record, decode_records  # noqa: E402
from exporter.scenarios.agent import AgentProcess, SeenAlert  # noqa: E402
from exporter.scenarios.lab import Lab, TrialRun  # noqa: E402
from exporter.scenarios.library import Scenario, load_library, rule_table  # noqa: E402
from exporter.scenarios.session import Outcome, Session, judge  # noqa: E402

WINDOWS_MS = (1000.0, 2000.0, 10000.0)
REGISTER_CHUNK = 200


def dig(body: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(body, dict):
            return None
        body = body.get(part)
    return body


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


class OtlpAlerts:
    """Alerts as the collector sees them: ECS documents in OTLP log records."""

    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver
        self._lock = threading.Lock()
        self._done = 0  # requests already converted
        self._alerts: list[SeenAlert] = []
        self._events: dict[str, int] = defaultdict(int)  # container id -> raw event records
        self.late_alerts = 0
        # Per first alert: (decisive syscall -> handed to the SDK in the agent, its
        # observed time; observed time -> arrival here), ms: the agent's part and the export's.
        self.splits: list[tuple[float, float]] = []

    def _refresh(self) -> None:
        with self.receiver._cond:
            fresh = self.receiver.received[self._done :]
        if not fresh:
            return
        with self._lock:
            self._done += len(fresh)
            for item in fresh:
                if _raw_events_only(item):
                    self._count_raw(item)
                    continue
                for record in decode_records(item, light=True):
                    self._take(record)

    def _count_raw(self, item: Any) -> None:
        """Raw events are only counted per container: read just that attribute. (Decoding
        them whole held this process's interpreter, and so the receiver's thread that
        stamps an alert's arrival, for ms at a time: a real collector is not in the
        harness's process.)"""
        for rl in item.request.resource_logs:
            for sl in rl.scope_logs:
                for lr in sl.log_records:
                    for kv in lr.attributes:
                        if kv.key == "container.id":
                            self._events[kv.value.string_value] += 1
                            break

    def _take(self, r: Record) -> None:
        cid = str(r.attributes.get("container.id", ""))
        if r.event_name != "provex.alert":
            if cid:
                self._events[cid] += 1
            return
        body = r.body if isinstance(r.body, dict) else {}
        techniques = _as_list(dig(body, "threat.technique.id")) + _as_list(
            dig(body, "threat.technique.subtechnique.id")
        )
        if dig(body, "labels.provex_enrichment") == "late":
            self.late_alerts += 1
        if not dig(body, "labels.provex_followup_of") and r.observed_time_unix_nano:
            observed = r.observed_time_unix_nano
            self.splits.append(((observed - r.time_unix_nano) / 1e6, (r.arrival_wall_ns - observed) / 1e6))
        self._alerts.append(
            SeenAlert(
                rule_id=str(r.attributes.get("provex.rule.id", dig(body, "rule.id") or "")),
                rule_title=str(dig(body, "rule.name") or ""),
                container_id=cid or str(dig(body, "container.id") or ""),
                pod_name=str(dig(body, "orchestrator.resource.name") or ""),
                pod_namespace=str(dig(body, "orchestrator.namespace") or ""),
                techniques=tuple(techniques),
                decisive_ts_ns=r.time_unix_nano,
                seen_ns=r.arrival_wall_ns,
                followup=bool(dig(body, "labels.provex_followup_of")),
                doc=body,
            )
        )

    def alerts(self) -> list[SeenAlert]:
        self._refresh()
        with self._lock:
            return list(self._alerts)

    def events_of(self, container_id: str) -> int:
        self._refresh()
        return self._events.get(container_id, 0)

    def wait(self, timeout_s: float) -> None:
        with self.receiver._cond:
            self.receiver._cond.wait(timeout_s)


def _raw_events_only(item: Any) -> bool:
    """A request of the raw-event scope only (alerts travel apart, on their own queue)."""
    return all(sl.scope.name == "provex.events" for rl in item.request.resource_logs for sl in rl.scope_logs)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _split(splits: list[tuple[float, float]]) -> dict[str, Any]:
    """Where an alert's latency goes: in the agent (syscall to the SDK) and in the export
    (SDK to the receiver), each with p50/p95/p99."""
    out: dict[str, Any] = {"alerts": len(splits)}
    for i, part in enumerate(("agent", "export")):
        values = sorted(s[i] for s in splits)
        out[part] = {f"p{q}": _round(percentile(values, q)) for q in (50, 95, 99)}
    return out


def histogram_quantiles(metrics: dict[str, float], name: str) -> dict[str, Any]:
    """p50/p95/p99 of an agent histogram (its /metrics buckets), each as the upper bound of
    the bucket it falls in, in ms: where the time goes inside the agent, next to the
    receiver-side latency."""
    buckets = sorted(
        (float(key.split('le="', 1)[1].split('"', 1)[0]), value)
        for key, value in metrics.items()
        if key.startswith(f"{name}_bucket{{") and 'le="' in key
    )
    total = metrics.get(f"{name}_count", 0)
    out: dict[str, Any] = {"count": int(total)}
    for label, q in (("p50_le", 0.5), ("p95_le", 0.95), ("p99_le", 0.99)):
        bound = next((le for le, cumulative in buckets if total and cumulative >= q * total), None)
        out[label] = None if bound is None else (round(bound * 1000, 1) if bound != math.inf else "inf")
    return out


def schedule(scenarios: list[Scenario], trials: int, seed: int) -> list[tuple[Scenario, int]]:
    items = [(s, n) for s in scenarios for n in range(trials)]
    random.Random(seed).shuffle(items)
    return items


def score_attacks(outcomes: list[Outcome]) -> dict[str, Any]:
    valid = [o for o in outcomes if o.status != "error"]
    detected = [o for o in valid if o.detected]
    lat = sorted(o.latency_ms for o in detected if o.latency_ms is not None)
    n = len(valid)

    def rate(k: int, d: int) -> float | None:
        return round(k / d, 4) if d else None

    tech_ok = [
        o
        for o in detected
        if o.expected is not None
        and any(
            t == o.scenario.technique or t.startswith(o.scenario.technique + ".")
            for t in o.expected.techniques
        )
    ]
    enrich_ok = [
        o
        for o in detected
        if o.expected is not None
        and (o.expected.pod_name, o.expected.pod_namespace) == (o.run.prepared.pod_name, o.scenario.namespace)
    ]
    wrong: dict[str, int] = defaultdict(int)
    for o in valid:
        for alert in o.wrong_alerts():
            wrong[alert.rule_title or alert.rule_id] += 1
    return {
        "trials": len(outcomes),
        "errors": len(outcomes) - n,
        "detected": len(detected),
        "detection_rate": rate(len(detected), n),
        "in_window": {f"{int(w / 1000)}s": rate(sum(1 for x in lat if x <= w), n) for w in WINDOWS_MS},
        "latency_ms": {
            f"p{q}": (round(v, 3) if (v := percentile(lat, q)) is not None else None) for q in (50, 95, 99)
        }
        | {"max": round(lat[-1], 3) if lat else None},
        "technique_correct": f"{len(tech_ok)}/{len(detected)}",
        "enrichment_correct": f"{len(enrich_ok)}/{len(detected)}",
        "other_rule_alerts": sum(wrong.values()),
        "other_rule_alerts_by_rule": dict(sorted(wrong.items())),
        "trials_alerted_by_rule": _trials_by_rule(valid),
    }


def _trials_by_rule(outcomes: list[Outcome]) -> dict[str, int]:
    """Every rule that alerted (expected, raised by design, or not), with the number of
    trials it alerted in: what a form did raise when its own rule did not."""
    counts: dict[str, int] = defaultdict(int)
    for o in outcomes:
        for title in {a.rule_title or a.rule_id for a in o.alerts if not a.followup}:
            counts[title] += 1
    return dict(sorted(counts.items()))


def score_benign(outcomes: list[Outcome], events_of: Any) -> dict[str, Any]:
    valid = [o for o in outcomes if o.status != "error"]
    flagged = [o for o in valid if o.alerts]
    alerts = sum(len(o.alerts) for o in valid)
    events = sum(events_of(o.run.prepared.container_id) for o in valid)
    return {
        "trials": len(outcomes),
        "errors": len(outcomes) - len(valid),
        "trials_with_alerts": len(flagged),
        "fp_trial_rate": f"{len(flagged)}/{len(valid)}",
        "alerts": alerts,
        "events": events,
        "fp_per_event": f"{alerts}/{events}",
        "rules": sorted({a.rule_title for o in flagged for a in o.alerts}),
    }


def _alert_sample(o: Outcome, a: Any) -> dict[str, Any]:
    """What an unexpected alert was about, from its document."""
    return {
        "scenario": o.scenario.name,
        "trial": o.run.prepared.trial,
        "pod": o.run.prepared.pod_name,
        "rule": a.rule_title,
        "alert_pod": a.pod_name,
        "syscall": dig(a.doc, "event.action") if a.doc else None,
        "process": dig(a.doc, "process.name") if a.doc else None,
        "executable": dig(a.doc, "process.executable") if a.doc else None,
        "parent": dig(a.doc, "process.parent.executable") if a.doc else None,
        "late": dig(a.doc, "labels.provex_enrichment") if a.doc else None,
        "decisive_after_trial_end_ms": round((a.decisive_ts_ns - o.run.ended_ns) / 1e6, 3),
        "decisive_after_trial_start_ms": round((a.decisive_ts_ns - o.run.started_ns) / 1e6, 3),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    library = load_library(args.library or None)
    scenarios = [s for s in library if not args.scenario or s.name in args.scenario]
    missing = set(args.scenario or []) - {s.name for s in library}
    if missing:
        raise SystemExit(f"eval: unknown scenarios {sorted(missing)}")
    plan = schedule(scenarios, args.trials, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rules = rule_table(scenarios)  # a held-out list's expected new rules judge as never fired
    receiver = OtlpReceiver("grpc").start()
    lab = Lab(out / "lab")
    agent = AgentProcess(
        out / "agent",
        lab.kubeconfig,
        lab.node_name,
        extra=["--schema", "ecs", "--otlp-endpoint", receiver.endpoint, *args.agent_arg],
        alerts_to_file=False,
    )
    feed = OtlpAlerts(receiver)
    runs: list[TrialRun] = []
    started = time.monotonic()
    try:
        agent.start()
        session = Session(lab, feed.alerts, feed.wait, rules, agent.wait_pods)
        for i in range(0, len(plan), REGISTER_CHUNK):
            session.prepare(plan[i : i + REGISTER_CHUNK])  # Pods first: ids are deterministic
        prepared = [lab.prepare(s, n) for s, n in plan]
        for i, p in enumerate(prepared):
            runs.append(lab.run(p))
            if (i + 1) % 50 == 0:
                failed = sum(not r.ok for r in runs)
                print(f"eval: {i + 1}/{len(prepared)} trials ({failed} workloads failed)", file=sys.stderr)
        session.wait_all(runs, args.settle)
        caught_up = session.barrier(args.settle)
        metrics = agent.metrics()
        counters = agent.kernel_counters()
    finally:
        code = agent.stop()  # flushes the batched raw events
        time.sleep(0.5)
        receiver.stop()
        lab.close()
    elapsed = time.monotonic() - started
    alerts = feed.alerts()
    outcomes = [judge(r, alerts, rules, late_ms=WINDOWS_MS[-1]) for r in runs]
    by_scenario: dict[str, list[Outcome]] = defaultdict(list)
    by_class: dict[str, list[Outcome]] = defaultdict(list)
    by_family: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_scenario[o.scenario.name].append(o)
        by_class[o.scenario.klass].append(o)
        if o.scenario.family:
            by_family[f"{o.scenario.family} ({o.scenario.kind})"].append(o)
    attacks = [o for o in outcomes if o.scenario.kind == "attack"]
    benign = [o for o in outcomes if o.scenario.kind == "benign"]
    lost = {f"{s}/{c}": v for (s, c), v in counters.items() if c.startswith("lost") and v}
    drops = {k: v for k, v in metrics.items() if "drop" in k and v and not k.startswith("#")}
    return {
        "command": " ".join(["python", "bench/eval.py", *sys.argv[1:]]),
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "trials_per_scenario": args.trials,
        "seed": args.seed,
        "scenarios": len(scenarios),
        "trials": len(outcomes),
        "elapsed_s": round(elapsed, 1),
        "agent_exit": code,
        "sentinel_caught_up": caught_up,
        "attacks": score_attacks(attacks),
        "benign": score_benign(benign, feed.events_of),
        "late_enrichment_alerts": feed.late_alerts,
        "latency_split_ms": _split(feed.splits),
        "agent_ms": {  # inside the agent, from its own histograms
            "alert_delay": histogram_quantiles(metrics, "provex_alert_delay_seconds"),
            "ring_lag": histogram_quantiles(metrics, "provex_ring_lag_seconds"),
        },
        "lost_events": {"kernel": lost, "kernel_total": sum(lost.values()), "export_drops": drops},
        "kernel_emitted": sum(v for (_, c), v in counters.items() if c == "emitted"),
        "by_class": {
            k: (score_attacks(v) if v[0].scenario.kind == "attack" else score_benign(v, feed.events_of))
            for k, v in sorted(by_class.items())
        },
        "by_family": {
            k: (score_attacks(v) if v[0].scenario.kind == "attack" else score_benign(v, feed.events_of))
            for k, v in sorted(by_family.items())
        },
        "by_scenario": {
            k: (score_attacks(v) if v[0].scenario.kind == "attack" else score_benign(v, feed.events_of))
            | {
                "class": v[0].scenario.klass,
                "family": v[0].scenario.family,
                "rule": v[0].scenario.rule,
                "rule_pending": bool(v[0].scenario.rule and rules[v[0].scenario.rule].pending),
            }
            for k, v in sorted(by_scenario.items(), key=lambda kv: (kv[1][0].scenario.klass, kv[0]))
        },
        "other_rule_alert_samples": [_alert_sample(o, a) for o in attacks for a in o.wrong_alerts()][:10],
        "false_positive_samples": [_alert_sample(o, a) for o in benign for a in o.alerts][:10],
        "error_samples": [
            {"scenario": o.scenario.name, "exit": o.run.returncode, "stderr": o.run.stderr[-300:]}
            for o in outcomes
            if o.status == "error"
        ][:5],
        "misses": [
            {"scenario": o.scenario.name, "trial": o.run.prepared.trial, "status": o.status}
            for o in attacks
            if not o.detected
        ],
        "_latencies": {
            k: sorted(o.latency_ms for o in v if o.latency_ms is not None)
            for k, v in by_class.items()
            if v[0].scenario.kind == "attack"
        },
    }


def markdown(doc: dict[str, Any]) -> str:
    a, b = doc["attacks"], doc["benign"]
    lat = a["latency_ms"]
    lines = [
        "# provex detection evaluation",
        "",
        f"`{doc['command']}` — {doc['trials']} trials ({doc['trials_per_scenario']} per scenario, "
        f"{doc['scenarios']} scenarios, seed {doc['seed']}), {doc['elapsed_s']} s, "
        f"kernel {doc['host']['kernel']}, {doc['host']['cpus']} CPUs.",
        "",
        "Latency: decisive syscall (the alert's time_unix_nano) -> arrival at the OTLP receiver.",
        "",
        "## Overall",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| attack detection rate | {a['detected']}/{a['trials'] - a['errors']} = {a['detection_rate']} |",
        f"| in window 1 s / 2 s / 10 s | {a['in_window']['1s']} / {a['in_window']['2s']} / {a['in_window']['10s']} |",
        f"| latency p50 / p95 / p99 / max (ms) | {lat['p50']} / {lat['p95']} / {lat['p99']} / {lat['max']} |",
        f"| technique correct | {a['technique_correct']} |",
        f"| enrichment correct (Pod name + namespace) | {a['enrichment_correct']} |",
        f"| alerts of another rule on attack trials | {a['other_rule_alerts']} |",
        f"| benign trials with an alert | {b['fp_trial_rate']} |",
        f"| alerts per benign event | {b['fp_per_event']} |",
        f"| scenario errors (workload failed) | {a['errors'] + b['errors']} |",
        f"| kernel events lost | {doc['lost_events']['kernel_total']} of {int(doc['kernel_emitted'])} emitted |",
        f"| export drops | {doc['lost_events']['export_drops'] or 0} |",
        "",
        "## Attacks by scenario",
        "",
        "| class | scenario | rule | detected | 1 s | 2 s | 10 s | p50 ms | p95 ms | p99 ms | technique | Pod |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in doc["by_scenario"].items():
        if "detected" not in s:
            continue
        w, lt = s["in_window"], s["latency_ms"]
        rule = f"{s['rule']} (pending)" if s.get("rule_pending") else s["rule"]
        lines.append(
            f"| {s['class']} | {name} | {rule} | {s['detected']}/{s['trials'] - s['errors']} | {w['1s']} | "
            f"{w['2s']} | {w['10s']} | {lt['p50']} | {lt['p95']} | {lt['p99']} | {s['technique_correct']} | "
            f"{s['enrichment_correct']} |"
        )
    lines += [
        "",
        "## Benign by scenario",
        "",
        "| scenario | trials with an alert | alerts | events |",
        "| --- | --- | --- | --- |",
    ]
    for name, s in doc["by_scenario"].items():
        if "detected" in s:
            continue
        lines.append(f"| {name} | {s['fp_trial_rate']} | {s['alerts']} | {s['events']} |")
    if doc["misses"]:
        lines += ["", "## Misses", ""] + [
            f"- {m['scenario']} #{m['trial']}: {m['status']}" for m in doc["misses"]
        ]
    lines += ["", "![latency CDF](latency_cdf.png)", ""]
    return "\n".join(lines)


def plot(latencies: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for klass, values in sorted(latencies.items()):
        if values:
            ys = [(i + 1) / len(values) for i in range(len(values))]
            ax.step(values, ys, where="post", label=f"{klass} (n={len(values)})")
    ax.set_xscale("log")
    ax.set_xlabel("latency, decisive syscall -> OTLP receiver (ms, log)")
    ax.set_ylabel("fraction of detected trials")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("provex alert latency CDF by attack class")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per scenario (20)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the interleaving (7)")
    parser.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    parser.add_argument(
        "--library",
        action="append",
        help="scenario file instead of the shipped library (repeatable; e.g. bench/variants/heldout.yaml)",
    )
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait for late alerts (10)")
    parser.add_argument("--out", default=str(REPO / "out" / "eval"), help="output directory (out/eval)")
    parser.add_argument("--agent-arg", action="append", default=[], help="extra agent argument (repeatable)")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be >= 1")
    # The receiver stamps an alert's arrival on one of this process's threads: let it have
    # the interpreter within 1 ms of wanting it (Python's default is 5 ms), as the agent does.
    sys.setswitchinterval(0.001)
    doc = run(args)
    out = Path(args.out)
    latencies = doc.pop("_latencies")
    plot(latencies, out / "latency_cdf.png")
    (out / "eval.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "eval.md").write_text(markdown(doc))
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
