"""Value checks a type cannot express: addresses, URLs, sizes, windows, members.

`check_values(config)` yields (key path, problem) for each value the agent
could not use; the loader names where the value came from. The address and
URL checks are shared with the stages that use them (addresses: exporter.model.addresses).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from exporter.config.schema import Config
from exporter.model.addresses import is_host, parse_host_port, parse_ip_port
from exporter.probes.layout import TYPE_BITS

Problem = tuple[tuple[str, ...], str]


def normalize_endpoint(text: str) -> str:
    """An OTLP endpoint as a URL: `host:port` means `http://host:port`."""
    return text if "://" in text else "http://" + text


def url_problem(text: str) -> str | None:
    """Why `text` is not a usable http(s) URL, or None."""
    parts = urlsplit(normalize_endpoint(text))
    if parts.scheme not in ("http", "https"):
        return f"{text!r}: scheme {parts.scheme!r} is not http or https"
    try:
        port = parts.port
    except ValueError:
        return f"{text!r}: the port is not a number 1..65535"
    if port == 0:
        return f"{text!r}: port 0 is not a collector's port"
    host = parts.hostname or ""
    if not host or not is_host(host):
        return f"{text!r} is not a URL: expected http(s)://HOST[:PORT][/path]"
    return None


def check_values(config: Config) -> Iterator[Problem]:
    p, e, c, o, s = config.probes, config.enrich, config.correlate, config.output, config.server
    for key in ("ring_buffer_pages", "decisive_ring_pages"):
        pages = getattr(p, key)
        if pages <= 0 or pages & (pages - 1):
            yield ("probes", key), f"{pages} is not allowed; expected a power of two (e.g. 1024)"
    if p.decisive_rate < 0:
        yield (
            ("probes", "decisive_rate"),
            f"{p.decisive_rate} is not allowed; expected a number >= 0 (0: no budget)",
        )
    for key in ("decisive_burst_s", "sensitive_repeat_interval_s"):
        if getattr(p, key) < 0:
            yield ("probes", key), f"{getattr(p, key)} is not allowed; expected a number >= 0"
    if not p.host_root.startswith("/"):
        yield ("probes", "host_root"), f"{p.host_root!r} is not allowed; expected an absolute path"
    for i, path in enumerate(p.runtime_binaries):
        if not path.startswith("/"):
            yield (
                ("probes", "runtime_binaries", str(i)),
                f"{path!r} is not allowed; expected an absolute path",
            )
    if not 64 <= p.path_max <= 4096:
        # at least the path filter's key (64 bytes), which the kernel copies from the path
        yield ("probes", "path_max"), f"{p.path_max} is not allowed; expected 64..4096"
    for key in ("flood_read_rate", "flood_event_rate"):
        if getattr(p, key) < 0:
            yield ("probes", key), f"{getattr(p, key)} is not allowed; expected a number >= 0 (0: no budget)"
    if p.flood_burst_s <= 0:
        yield ("probes", "flood_burst_s"), f"{p.flood_burst_s} is not allowed; expected a number > 0"
    for key in ("drain_max_records", "drain_max_ms"):
        if getattr(p, key) < 1:
            yield ("probes", key), f"{getattr(p, key)} is not allowed; expected a number >= 1"
    if p.cgroup_subtree and p.monitor == "all":
        yield ("probes", "cgroup_subtree"), "is set with monitor=all; the subtree scopes monitor=containers"
    if ".." in p.cgroup_subtree.split("/"):
        yield ("probes", "cgroup_subtree"), f"{p.cgroup_subtree!r} is not allowed; expected a path without .."
    known = [t.value for t in TYPE_BITS]  # what the kernel reports (not the agent's own records)
    for i, name in enumerate(p.wakeup_types):
        if name not in known:
            yield (
                ("probes", "wakeup_types", str(i)),
                (f"{name!r} is not an event type; expected one of: {', '.join(known)}"),
            )
    for i, addr in enumerate(e.apiserver_addresses):
        try:
            parse_ip_port(addr)
        except ValueError as exc:
            yield ("enrich", "apiserver_addresses", str(i)), str(exc)
    if s.health_addr:
        try:
            parse_host_port(s.health_addr)
        except ValueError as exc:
            yield ("server", "health_addr"), str(exc)
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        missing = "tls_key_file" if s.tls_cert_file else "tls_cert_file"
        yield ("server", missing), "is empty: TLS needs both server.tls_cert_file and server.tls_key_file"
    if o.otlp.endpoint:
        problem = url_problem(o.otlp.endpoint)
        if problem:
            yield ("output", "otlp", "endpoint"), problem
    yield from _at_least(
        [
            (("probes", "argv_max_args"), p.argv_max_args, 1),
            (("probes", "argv_arg_max"), p.argv_arg_max, 1),
            (("probes", "drain_interval_ms"), p.drain_interval_ms, 1),
            (("probes", "wakeup_bytes"), p.wakeup_bytes, 1),
            (("enrich", "pod_cache_ttl_s"), e.pod_cache_ttl_s, 0),
            (("enrich", "deleted_pod_grace_s"), e.deleted_pod_grace_s, 0),
            (("enrich", "enrichment_wait_ms"), e.enrichment_wait_ms, 0),
            (("enrich", "park_max"), e.park_max, 1),
            (("enrich", "process_table_max"), e.process_table_max, 1),
            (("enrich", "lineage_depth"), e.lineage_depth, 0),
            (("enrich", "resync_backoff_max_s"), e.resync_backoff_max_s, 0),
            (("correlate", "window_s"), c.window_s, -1),
            (("correlate", "max_nodes"), c.max_nodes, 1),
            (("correlate", "max_edges"), c.max_edges, 1),
            (("correlate", "dedup_window_s"), c.dedup_window_s, 0),
            (("output", "otlp", "queue_size"), o.otlp.queue_size, 1),
            (("output", "otlp", "alert_queue_size"), o.otlp.alert_queue_size, 1),
            (("output", "otlp", "batch_delay_ms"), o.otlp.batch_delay_ms, 0),
            (("output", "otlp", "batch_size"), o.otlp.batch_size, 1),
            (("output", "otlp", "max_attempts"), o.otlp.max_attempts, 1),
            (("output", "otlp", "backoff_max_s"), o.otlp.backoff_max_s, 0),
            (("output", "otlp", "drop_warning_interval_s"), o.otlp.drop_warning_interval_s, 0),
            (("output", "otlp", "timeout_s"), o.otlp.timeout_s, -1),
            (("server", "stall_after_s"), s.stall_after_s, -1),
        ]
    )


def _at_least(items: list[tuple[tuple[str, ...], float | None, int]]) -> Iterator[Problem]:
    """Each value must be >= low; low -1 stands for "> 0" (a window or a timeout)."""
    for key, value, low in items:
        if value is None:
            continue
        if low == -1 and value <= 0:
            yield key, f"{value} is not allowed; expected a number > 0"
        elif low >= 0 and value < low:
            yield key, f"{value} is not allowed; expected a number >= {low}"
