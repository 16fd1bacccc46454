"""Enrichment cost per event (warm caches) against a no-op pass, and Pod cache memory.

Prints one JSON object. The baseline (a no-op Enricher over the same events)
is measured in the same run, so the ratio means something on a noisy machine.

    PYTHONPATH=. python bench/enrich_bench.py [--events 200000] [--pods 10000]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc

import msgspec

from exporter.enrich.apiserver import ApiServerSet
from exporter.enrich.cgroups import CgroupResolver
from exporter.enrich.pods import PodCache, pod_from_json
from exporter.enrich.proctable import ProcEntry, ProcessTable
from exporter.enrich.stage import EnrichStage
from exporter.model import Event, EventType


def pod_json(i: int) -> dict:
    uid = f"{i:08x}-0000-4000-8000-{i:012x}"
    cid = f"{i:064x}"
    return {
        "metadata": {
            "name": f"app-{i}-7d9f8c6b5-x2k4q",
            "namespace": f"team-{i % 50}",
            "uid": uid,
            "labels": {"app": f"app-{i}", "pod-template-hash": "7d9f8c6b5", "tier": "backend",
                       "team": f"t{i % 50}"},
        },
        "spec": {
            "nodeName": "node-a",
            "serviceAccountName": f"app-{i}",
            "volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}}],
            "containers": [
                {"name": "app", "image": f"registry.example/app-{i}:1.{i % 10}",
                 "volumeMounts": [{"name": "logs", "mountPath": "/host/var/log", "readOnly": True}]},
                {"name": "sidecar", "image": "registry.example/proxy:2.1"},
            ],
        },
        "status": {"containerStatuses": [
            {"name": "app", "containerID": f"containerd://{cid}"},
            {"name": "sidecar", "containerID": f"containerd://{(i + 1 << 200):064x}"[-64:]},
        ]},
    }  # fmt: skip


CURL = ["curl", "-H", "Authorization: Bearer x", "https://10.96.0.1"]


def make_events(n: int, n_containers: int) -> list[Event]:
    kinds = [EventType.OPEN] * 6 + [EventType.EXEC, EventType.CONNECT, EventType.FORK, EventType.OPEN]
    out = []
    for i in range(n):
        c = i % (n_containers + 1)  # one in n_containers+1 from the host
        kind = kinds[i % len(kinds)]
        out.append(
            Event(
                id=f"e{i}", type=kind, syscall=kind.value, ts_ns=i, pid=1000 + c, tid=1000 + c, ppid=1,
                cgroup_id=100 + c, path="/etc/passwd" if kind is not EventType.EXEC else "/usr/bin/curl",
                argv=CURL if kind is EventType.EXEC else [],
                daddr="10.96.0.1" if kind is EventType.CONNECT else "", dport=443,
                child_pid=50000 + i % 1000 if kind is EventType.FORK else 0,
            )
        )  # fmt: skip
    return out


class NoopEnricher:
    def __init__(self) -> None:
        self._ready: list[Event] = []

    def push(self, event: Event, now_ns: int) -> None:
        self._ready.append(event)

    def pop_ready(self, now_ns: int) -> list[Event]:
        out, self._ready = self._ready, []
        return out


def run(enricher, events: list[Event], batch: int = 64) -> float:
    t0 = time.perf_counter_ns()
    delivered = 0
    for start in range(0, len(events), batch):
        for e in events[start : start + batch]:
            enricher.push(e, start)
        delivered += len(enricher.pop_ready(start))
    elapsed = time.perf_counter_ns() - t0
    assert delivered == len(events), (delivered, len(events))
    return elapsed / len(events)


def build_stage(n_containers: int) -> EnrichStage:
    cgroups = CgroupResolver(None)
    cgroups.remember(100, "/system.slice/sshd.service")  # the host's events
    pods = PodCache()
    for c in range(1, n_containers + 1):
        doc = pod_json(c)
        uid = doc["metadata"]["uid"].replace("-", "_")
        cgroups.remember(
            100 + c,
            "/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{uid}.slice/cri-containerd-{c:064x}.scope",
        )
        pods.upsert(pod_from_json(doc))
    procs = ProcessTable()
    for c in range(n_containers + 1):
        procs.put(ProcEntry(pid=1000 + c, exe="/bin/sh", argv=["sh"], ppid=1))
    apiservers = ApiServerSet(["10.96.0.1:443"])
    return EnrichStage(cgroups=cgroups, processes=procs, pods=pods, apiservers=apiservers, wait_ms=50)


def pod_cache_memory(n: int) -> dict:
    docs = [pod_json(i) for i in range(1, n + 1)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    cache = PodCache(maxsize=max(n, 1024))
    for d in docs:
        cache.upsert(pod_from_json(d))
    del docs
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    total = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert len(cache) == n
    return {"pods": n, "pod_cache_bytes": total, "bytes_per_pod": round(total / n)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--containers", type=int, default=200)
    ap.add_argument("--pods", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    template = make_events(args.events, args.containers)
    noop, enrich = [], []
    for _ in range(args.repeat):  # interleaved, best of N: the machine is noisy
        events = [msgspec.structs.replace(e) for e in template]
        noop.append(run(NoopEnricher(), events))
        stage = build_stage(args.containers)
        events = [msgspec.structs.replace(e) for e in template]
        enrich.append(run(stage, events))
        assert all(e.process is not None for e in events)
        assert sum(1 for e in events if e.container and e.container.pod) == sum(
            1 for e in template if e.cgroup_id != 100
        )
    result = {
        "bench": "enrich",
        "events": args.events,
        "containers": args.containers,
        "noop_ns_per_event": round(min(noop)),
        "enrich_ns_per_event": round(min(enrich)),
        "overhead_ns_per_event": round(min(enrich) - min(noop)),
        "ratio_vs_noop": round(min(enrich) / min(noop), 1),
        "enrich_events_per_s": round(1e9 / min(enrich)),
        **pod_cache_memory(args.pods),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
