"""Metrics of the enrich stage, on the agent's registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from exporter.metrics import REGISTRY

K8S_WATCH_ERRORS = Counter(
    "provex_k8s_watch_errors",
    "Kubernetes list/watch failures, by cause",
    ["cause"],
    registry=REGISTRY,
)
K8S_CONNECTED = Gauge(
    "provex_k8s_connected", "1 while the Pod list/watch is in sync with the API server", registry=REGISTRY
)
K8S_RELISTS = Counter("provex_k8s_relists", "Full Pod relists, by cause", ["cause"], registry=REGISTRY)
K8S_PODS = Gauge("provex_k8s_pods", "Pods of this node in the cache (live)", registry=REGISTRY)
APISERVER_REFRESH_ERRORS = Counter(
    "provex_k8s_apiserver_refresh_errors",
    "Failed refreshes of the API server address set, by cause",
    ["cause"],
    registry=REGISTRY,
)

CGROUP_MISSES = Counter(
    "provex_enrich_cgroup_misses", "cgroup ids not in the cache when an event needed them", registry=REGISTRY
)
CGROUP_RESCANS = Counter("provex_enrich_cgroup_rescans", "Walks of the cgroup2 tree", registry=REGISTRY)

PARKED = Gauge("provex_enrich_parked", "Events waiting for their Pod identity", registry=REGISTRY)
PARK_OVERFLOW = Counter(
    "provex_enrich_park_overflow",
    "Events released early (marked late) because the park was full",
    registry=REGISTRY,
)
LATE = Counter(
    "provex_enrich_late",
    "Events released without the Pod identity they should have had, by cause",
    ["cause"],
    registry=REGISTRY,
)
PROCESS_EVICTIONS = Counter(
    "provex_enrich_process_evictions", "Process table entries evicted (LRU bound)", registry=REGISTRY
)
PROCESS_MISSES = Counter(
    "provex_enrich_process_misses", "Events from a pid the process table did not know", registry=REGISTRY
)
MOUNT_ERRORS = Counter(
    "provex_enrich_mount_errors",
    "Container mount resolutions that failed, by cause",
    ["cause"],
    registry=REGISTRY,
)
CONTEXT_READS = Counter(
    "provex_enrich_context_reads",
    "Reads of a process's cwd and root from /proc (processes the stream did not see start), by outcome",
    ["outcome"],
    registry=REGISTRY,
)
