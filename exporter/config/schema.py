"""The configuration schema: one YAML file, one section per stage.

Every key here can be set in the YAML file, by `--set section.key=value`, or by
the environment variable PROVEX_SECTION__KEY (see exporter.config.loader).
Unknown keys and wrong types are refused with the key, the file:line and the
reason, and nothing of a refused file is used.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

from exporter.config.checks import checked
from exporter.model.kernel import KERNEL_EVENT_TYPES

_STRICT = {"forbid_unknown_fields": True, "kw_only": True}

# Bounds, declared once: the loader enforces them (msgspec and exporter.config.checks), and
# scripts/gen-values-schema.py turns them into the chart's values.schema.json and its docs.
Count = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeSeconds = Annotated[float, msgspec.Meta(ge=0)]
# The ring is one BPF map of pages * 4 KiB, a power of two; its memory is charged to the
# agent's cgroup (the chart's limit is 1 GiB), so 65,536 pages (256 MiB) is the most.
RING_BUFFER_PAGES_MAX = 65536
RingBufferPages = Annotated[
    Literal[tuple(2**k for k in range(RING_BUFFER_PAGES_MAX.bit_length()))],  # type: ignore[valid-type]
    msgspec.Meta(description=f"a power of two, 1..{RING_BUFFER_PAGES_MAX} (pages of 4 KiB; e.g. 1024)"),
]
# What the kernel reports (not the agent's own records).
KernelEventType = Literal[tuple(t.value for t in KERNEL_EVENT_TYPES)]  # type: ignore[valid-type]


class ProbesConfig(msgspec.Struct, **_STRICT):
    # Ring buffer size in pages of 4 KiB: a power of two.
    ring_buffer_pages: RingBufferPages = 1024
    # Longest path copied from user memory, bytes (including the NUL).
    path_max: Annotated[int, msgspec.Meta(ge=64, le=4096)] = 256
    # exec: how many argv entries and bytes per entry are copied.
    argv_max_args: Count = 16
    argv_arg_max: Count = 128
    # Which cgroups are monitored: "containers" (every cgroup that is not the
    # host's: see monitor_host), or "all".
    monitor: Literal["containers", "all"] = "containers"
    # Also monitor these cgroup v2 paths (relative to the cgroup2 mount), even
    # when monitor=containers (e.g. a host service you care about).
    extra_cgroups: list[str] = []
    # monitor=containers: look for containers only at or below this cgroup v2 path (relative
    # to the mount), e.g. this node's part of a host where several agents run; "" = everywhere.
    cgroup_subtree: checked(str, "cgroup_path") = ""
    # Open-family paths that cross to user space: a path is interesting when
    # it starts with one of these prefixes. Others are counted and dropped in
    # the kernel. Empty list = every path.
    open_path_prefixes: list[str] = msgspec.field(
        default_factory=lambda: [
            "/etc/",
            "/root/",
            "/home/",
            "/proc/",
            "/sys/fs/cgroup/",
            "/sys/kernel/",
            "/var/run/secrets/",
            "/run/secrets/",
            "/var/lib/kubelet/",
            "/var/run/docker.sock",
            "/run/docker.sock",
            "/run/containerd/",
            "/var/run/crio/",
            "/host",
            "/boot/",
            "/dev/sd",
            "/dev/vd",
            "/dev/nvme",
            "/dev/xvd",
            "/dev/dm-",
            "/dev/mem",
            "/dev/kmem",
            "/dev/port",
        ]
    )
    # Open-family calls that only read are dropped unless the path matches;
    # writes/creates (O_WRONLY|O_RDWR|O_CREAT) always cross when this is true,
    # so download-then-exec chains see the written file.
    always_send_writes: bool = True
    # How often the consumer drains the ring buffer when no wakeup came (ms).
    drain_interval_ms: Count = 5
    # Wake the consumer at once for these event types (decisive syscalls);
    # everything else is batched until the drain interval or until the ring
    # holds more than wakeup_bytes.
    wakeup_types: list[KernelEventType] = msgspec.field(
        default_factory=lambda: ["exec", "mount", "setns", "unshare", "connect"]
    )
    wakeup_bytes: Count = 262144
    # Fairness: one container's flood must not blind the agent to the others. Each cgroup
    # may send this many reads of non-sensitive paths per second, and this many other
    # events, with a burst of flood_burst_s seconds' worth; past that its events are sampled
    # away in the kernel, counted per container and reported. 0 turns a budget off.
    flood_read_rate: NonNegative = 10000
    flood_event_rate: NonNegative = 10000
    flood_burst_s: Seconds = 0.1
    # Reads of these paths (prefixes) are never sampled away; a host mount that reaches one
    # adds its path inside the container too (a hostPath of / at /host adds /host/etc/shadow).
    sensitive_paths: list[str] = msgspec.field(
        default_factory=lambda: [
            "/var/run/secrets/",
            "/run/secrets/",
            "/etc/shadow",
            "/etc/gshadow",
            "/etc/sudoers",
            "/root/.ssh/",
            "/etc/ssh/ssh_host_",
            "/etc/kubernetes/",
            "/var/lib/kubelet/",
        ]
    )
    # A drain of the ring buffer stops after this many records or milliseconds (the rest
    # stays in the ring for the next one), so memory stays bounded under any flood.
    drain_max_records: Count = 128
    drain_max_ms: Count = 20
    # Who drains the ring buffers: "native", the compiled drain (exporter/source/_drain.pyx:
    # the ring walked with the GIL released, records decoded in C); "python", the reference
    # (bpfsys.RingBuffer and live.Decoder); "auto", native when it is built, else Python.
    drain: Literal["auto", "native", "python"] = "auto"
    # Decisive records (a successful exec, the mount family, setns, unshare, chroot, IP
    # connects and accepts, open_by_handle_at, io_uring opens, a first sensitive read) have a
    # ring buffer of their own that bulk records can never fill (pages of 4 KiB, a power of
    # two), and a budget per cgroup and per kind (exec, file, mount, ns, net): past it the
    # kernel counts them in a summary instead of sending them, and the summary is an event.
    # 0 turns the decisive budget off. 8 MiB holds ~15,000 exec records (~560 B each), some
    # 15 cgroup-seconds of exec budget: room for an agent starved of CPU for a while.
    decisive_ring_pages: RingBufferPages = 2048
    decisive_rate: NonNegative = 1000
    decisive_burst_s: Seconds = 1.0
    # A process's repeated reads of one sensitive file cross once per this interval; the
    # reads in between are counted and carried by the next one (Event.repeats). 0: every read.
    sensitive_repeat_interval_s: NonNegativeSeconds = 1.0
    # Judge files by what they are (device and inode, read from the running kernel's
    # structures at offsets from its BTF) rather than by how the path was spelled. Without
    # BTF (/sys/kernel/btf/vmlinux) the probes fall back to the spelling and say so.
    file_identity: bool = True
    # Where the agent sees the host's file system: "/" on the host, or where the chart mounts
    # it. Host sensitive files and the container runtime's binaries are found there.
    host_root: checked(str, "abs_path") = "/"
    # The host's container runtime binaries: recognised by their device and inode (and their
    # processes by lineage), never by a name a container could choose.
    runtime_binaries: list[checked(str, "abs_path")] = msgspec.field(
        default_factory=lambda: [
            "/usr/bin/runc",
            "/usr/sbin/runc",
            "/usr/local/bin/runc",
            "/usr/local/sbin/runc",
            "/usr/bin/crun",
            "/usr/local/bin/crun",
            "/usr/bin/containerd-shim-runc-v2",
            "/usr/local/bin/containerd-shim-runc-v2",
            "/usr/bin/containerd-shim",
            "/usr/bin/containerd",
            "/usr/local/bin/containerd",
            "/usr/bin/conmon",
            "/usr/libexec/podman/conmon",
            "/usr/libexec/crio/conmon",
            "/usr/bin/crio",
            "/usr/bin/dockerd",
        ]
    )


def node_name(configured: str = "", hostname: str = "", environ: Mapping[str, str] | None = None) -> str:
    """This node's name: `enrich.node_name`, else $NODE_NAME (a Pod's downward API), else
    the host name (`hostname`, when the caller knows it)."""
    environ = os.environ if environ is None else environ
    return configured or environ.get("NODE_NAME", "") or hostname or socket.gethostname()


class EnrichConfig(msgspec.Struct, **_STRICT):
    kubernetes: bool = True
    kubeconfig: str = ""  # default: $KUBECONFIG, then in-cluster service account
    node_name: str = ""  # default: $NODE_NAME, then the host name (see node_name())
    cluster_name: str = ""
    pod_cache_ttl_s: NonNegativeSeconds = 3600.0
    deleted_pod_grace_s: NonNegativeSeconds = 60.0
    # How long an event may wait for its Pod identity before it goes on
    # (marked late). 0 = never wait.
    enrichment_wait_ms: NonNegative = 50
    # At most this many events wait at once; past it the oldest goes on, late.
    park_max: Count = 10000
    process_table_max: Count = 65536
    lineage_depth: NonNegative = 8
    # Extra "this is the API server" addresses, as ip or ip:port.
    apiserver_addresses: list[checked(str, "ip_port")] = []
    resync_backoff_max_s: NonNegativeSeconds = 30.0


class CorrelateConfig(msgspec.Struct, **_STRICT):
    # Provenance graph: event-time window and budget (oldest evicted first).
    # An edge costs ~0.9 KB of RSS (bench/correlate_soak.py): 150k edges ~ 135 MB.
    window_s: Seconds = 600.0
    max_nodes: Count = 100000
    max_edges: Count = 150000
    rules_dirs: list[str] = []  # user Sigma rules, in addition to the defaults
    default_rules: bool = True  # the rules shipped in exporter/correlate/rules/
    disabled_rules: list[str] = []  # rule ids, names or titles
    # A rule provex cannot evaluate (a field or logsource it has no value for) refuses the
    # start unless this is true: then such rules are skipped, and named in the log.
    skip_unsupported_rules: bool = False
    # Later matches of a rule for the same key inside this window (event time)
    # are folded into one follow-up record; the first match is never delayed.
    dedup_window_s: NonNegativeSeconds = 60.0
    # The per-event path: "native" (the compiled core, exporter/correlate/native), "python"
    # (the reference it is tested against), or "auto": native when it is built, else python.
    engine: Literal["auto", "native", "python"] = "auto"


class OtlpConfig(msgspec.Struct, **_STRICT):
    # The collector: http(s)://host:port (gRPC) or the URL of /v1/logs (HTTP; a base URL
    # gets /v1/logs). "" = $OTEL_EXPORTER_OTLP_LOGS_ENDPOINT or $OTEL_EXPORTER_OTLP_ENDPOINT
    # for `provex run` (not when output.file is set); `provex replay` exports only to an
    # endpoint it is given. An endpoint means OTLP export (output.schema auto -> ecs).
    endpoint: checked(str, "url") = ""
    protocol: Literal["grpc", "http/protobuf", ""] = ""  # default: $OTEL_EXPORTER_OTLP_PROTOCOL or grpc
    # Empty keys leave the OpenTelemetry SDK's exporter to read the standard variables
    # itself: OTEL_EXPORTER_OTLP_[LOGS_]HEADERS, _CERTIFICATE, _CLIENT_KEY,
    # _CLIENT_CERTIFICATE, _INSECURE, _TIMEOUT, _COMPRESSION.
    headers: dict[str, str] = {}
    insecure: bool | None = None  # grpc: plaintext; default from the endpoint's scheme
    certificate: str = ""  # CA bundle (PEM) that signs the collector's certificate
    client_key: str = ""  # mTLS: client key and certificate (PEM)
    client_certificate: str = ""
    timeout_s: Seconds | None = None  # one export request; none = $OTEL_EXPORTER_OTLP_TIMEOUT or 10 s
    # raw events waiting for export (~1 s at 4k/s); beyond it they are dropped (counted)
    queue_size: Count = 4096
    alert_queue_size: Count = 2000
    # Raw events are batched; alerts are exported at once, never behind a batch.
    batch_delay_ms: NonNegative = 1000
    batch_size: Count = 512
    # A failed export is retried with exponential back-off, then dropped (counted). Alerts
    # are held instead while the failure passes (a collector down, a full disk), in their
    # own queue, and retried until the output takes them.
    max_attempts: Count = 5
    backoff_max_s: NonNegativeSeconds = 5.0
    drop_warning_interval_s: NonNegativeSeconds = 10.0


class OutputConfig(msgspec.Struct, **_STRICT):
    # What leaves the agent: "raw" (JSON lines, the replay format), or "ecs" /
    # "ocsf" documents (mappings/<schema>.yaml) as OpenTelemetry log records.
    # "auto": ecs when there is an OTLP endpoint, raw otherwise.
    schema: Literal["auto", "raw", "ecs", "ocsf"] = "auto"
    # Where records go without an OTLP endpoint; "" = stdout.
    file: str = ""
    # How they are written there: "json": raw records in the replay format, or ecs/ocsf
    # documents one per line (NDJSON, for Filebeat or Elasticsearch's _bulk); "text": a
    # line per event or alert for a person (raw only); "otlp-json": ecs/ocsf as OTLP log
    # records, what the collector's otlpjsonfile receiver reads. "auto": text when stdout
    # is a terminal and the schema raw, json otherwise. Not for an OTLP endpoint.
    format: Literal["auto", "json", "text", "otlp-json"] = "auto"
    raw_events: bool = True  # also ship raw events, not only alerts
    # Who writes ecs/ocsf documents' bytes (JSON lines, OTLP-JSON): "native" (the compiled
    # encoder, exporter/emit/native), "python" (the reference it is tested against), or
    # "auto": native when it is built, else python. The bytes are the same.
    encoder: Literal["auto", "native", "python"] = "auto"
    otlp: OtlpConfig = msgspec.field(default_factory=OtlpConfig)


class ServerConfig(msgspec.Struct, **_STRICT):
    # HOST:PORT for /healthz, /readyz and /metrics; "" = off. ":PORT" binds 127.0.0.1:
    # nothing is reachable from outside the host unless an address says so.
    health_addr: checked(str, "host_port") = ""
    # /healthz fails (503) when the event loop has not turned for this long.
    stall_after_s: Seconds = 30.0
    # Serve HTTPS with this certificate and key (PEM files).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # /metrics answers only "Authorization: Bearer <token>" with the token in this
    # file; /healthz and /readyz stay open for the kubelet's probes.
    metrics_token_file: str = ""


class LogConfig(msgspec.Struct, **_STRICT):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(msgspec.Struct, **_STRICT):
    probes: ProbesConfig = msgspec.field(default_factory=ProbesConfig)
    enrich: EnrichConfig = msgspec.field(default_factory=EnrichConfig)
    correlate: CorrelateConfig = msgspec.field(default_factory=CorrelateConfig)
    output: OutputConfig = msgspec.field(default_factory=OutputConfig)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
