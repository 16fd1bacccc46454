"""Configuration keys the collector components document, per component type.

Nested dicts describe nested sections; None means "a free-form section we do
not check further" (e.g. TLS, whose keys come from configtls). The versions
are opentelemetry-collector(-contrib) v0.144.0-era sources:

- confighttp.ClientConfig / configgrpc.ClientConfig / exporterhelper
  QueueBatchConfig / configretry.BackOffConfig: open-telemetry/opentelemetry-collector
  config/confighttp, config/configgrpc, exporter/exporterhelper, config/configretry.
- elasticsearch: contrib exporter/elasticsearchexporter/config.go (commit 8dbdd1e9b311)
  and its README ("mapping::mode deprecated; use the elastic.mapping.mode scope attribute",
  CHANGELOG v0.144.0, #45246).
- splunk_hec: contrib exporter/splunkhecexporter/config.go.
- otlp_grpc / otlp_http: the `otlp` / `otlphttp` exporters, renamed in v0.144.0
  (collector CHANGELOG #14403, #14396; the old names stay as deprecated aliases).
- memory_limiter, batch: collector processor/memorylimiterprocessor, processor/batchprocessor READMEs.
- filter, transform, groupbyattrs: contrib processor/filterprocessor, transformprocessor,
  groupbyattrsprocessor READMEs.
- file_storage: contrib extension/storage/filestorage/config.go (commit 4f70196d9bbc);
  health_check: contrib extension/healthcheckextension README.
"""

from __future__ import annotations

from typing import Any

TLS_CLIENT = None  # configtls.ClientConfig: ca_file, cert_file, key_file, insecure, ...
TLS_SERVER = None  # configtls.ServerConfig

SENDING_QUEUE = {
    "enabled": 1, "num_consumers": 1, "queue_size": 1, "storage": 1, "sizer": 1,
    "block_on_overflow": 1, "wait_for_result": 1, "batch": None,
}  # fmt: skip
RETRY_ON_FAILURE = {
    "enabled": 1, "initial_interval": 1, "randomization_factor": 1, "multiplier": 1,
    "max_interval": 1, "max_elapsed_time": 1,
}  # fmt: skip
HTTP_CLIENT = {
    "endpoint": 1, "proxy_url": 1, "tls": TLS_CLIENT, "read_buffer_size": 1, "write_buffer_size": 1,
    "timeout": 1, "headers": None, "auth": None, "compression": 1, "compression_params": None,
    "max_idle_conns": 1, "max_idle_conns_per_host": 1, "max_conns_per_host": 1, "idle_conn_timeout": 1,
    "disable_keep_alives": 1, "http2_read_idle_timeout": 1, "http2_ping_timeout": 1, "cookies": None,
}  # fmt: skip
GRPC_CLIENT = {
    "endpoint": 1, "compression": 1, "tls": TLS_CLIENT, "keepalive": None, "read_buffer_size": 1,
    "write_buffer_size": 1, "wait_for_ready": 1, "headers": None, "balancer_name": 1, "authority": 1,
    "auth": None,
}  # fmt: skip
GRPC_SERVER = {
    "endpoint": 1, "transport": 1, "tls": TLS_SERVER, "max_recv_msg_size_mib": 1,
    "max_concurrent_streams": 1, "read_buffer_size": 1, "write_buffer_size": 1, "keepalive": None,
    "auth": None, "include_metadata": 1,
}  # fmt: skip
HTTP_SERVER = {
    "endpoint": 1, "tls": TLS_SERVER, "cors": None, "auth": None, "max_request_body_size": 1,
    "include_metadata": 1, "response_headers": None, "traces_url_path": 1, "metrics_url_path": 1,
    "logs_url_path": 1,
}  # fmt: skip

RECEIVERS: dict[str, Any] = {
    "otlp": {"protocols": {"grpc": GRPC_SERVER, "http": HTTP_SERVER}},
}

PROCESSORS: dict[str, Any] = {
    "memory_limiter": {
        "check_interval": 1, "limit_mib": 1, "spike_limit_mib": 1, "limit_percentage": 1,
        "spike_limit_percentage": 1, "min_gc_interval_when_soft_limited": 1,
        "min_gc_interval_when_hard_limited": 1,
    },
    "batch": {
        "timeout": 1, "send_batch_size": 1, "send_batch_max_size": 1, "metadata_keys": 1,
        "metadata_cardinality_limit": 1,
    },
    "filter": {
        "error_mode": 1,
        "logs": {"log_record": 1, "include": None, "exclude": None},
        "traces": None, "metrics": None,
    },
    "transform": {
        "error_mode": 1, "log_statements": 1, "metric_statements": 1, "trace_statements": 1,
        "flatten_data": 1,
    },
    "groupbyattrs": {"keys": 1},
}  # fmt: skip

EXPORTERS: dict[str, Any] = {
    "otlp_grpc": {
        **GRPC_CLIENT, "timeout": 1, "sending_queue": SENDING_QUEUE, "retry_on_failure": RETRY_ON_FAILURE,
    },
    "otlp_http": {
        **HTTP_CLIENT, "sending_queue": SENDING_QUEUE, "retry_on_failure": RETRY_ON_FAILURE,
        "traces_endpoint": 1, "metrics_endpoint": 1, "logs_endpoint": 1, "profiles_endpoint": 1,
        "encoding": 1,
    },
    "elasticsearch": {
        **HTTP_CLIENT, "sending_queue": SENDING_QUEUE, "endpoints": 1, "cloudid": 1, "num_workers": 1,
        "logs_index": 1, "logs_dynamic_index": {"enabled": 1}, "metrics_index": 1,
        "metrics_dynamic_index": {"enabled": 1}, "traces_index": 1, "traces_dynamic_index": {"enabled": 1},
        "logs_dynamic_id": {"enabled": 1}, "logs_dynamic_pipeline": {"enabled": 1}, "pipeline": 1,
        "user": 1, "password": 1, "api_key": 1,
        "discover": {"on_start": 1, "interval": 1},
        "retry": {
            "enabled": 1, "max_requests": 1, "max_retries": 1, "initial_interval": 1, "max_interval": 1,
            "retry_on_status": 1,
        },
        "flush": {"bytes": 1, "interval": 1},
        "mapping": {"mode": 1, "allowed_modes": 1},
        "logstash_format": {"enabled": 1, "prefix_separator": 1, "date_format": 1},
        "telemetry": None, "include_source_on_error": 1, "batcher": None,
    },
    "splunk_hec": {
        **HTTP_CLIENT, "sending_queue": SENDING_QUEUE, "retry_on_failure": RETRY_ON_FAILURE, "batcher": None,
        "log_data_enabled": 1, "profiling_data_enabled": 1, "token": 1, "source": 1, "sourcetype": 1,
        "index": 1, "disable_compression": 1, "max_content_length_logs": 1, "max_content_length_metrics": 1,
        "max_content_length_traces": 1, "max_event_size": 1, "splunk_app_name": 1, "splunk_app_version": 1,
        "otel_attrs_to_hec_metadata": None, "hec_metadata_to_otel_attrs": None, "otel_to_hec_fields": None,
        "health_path": 1, "health_check_enabled": 1, "export_raw": 1, "use_multi_metric_format": 1,
        "heartbeat": {"interval": 1, "startup": 1}, "telemetry": None,
    },
}  # fmt: skip

EXTENSIONS: dict[str, Any] = {
    "health_check": {
        "endpoint": 1, "path": 1, "tls": TLS_SERVER, "response_body": None, "check_collector_pipeline": None,
    },
    "file_storage": {"directory": 1, "timeout": 1, "compaction": None, "fsync": 1},
}  # fmt: skip

KINDS = {"receivers": RECEIVERS, "processors": PROCESSORS, "exporters": EXPORTERS, "extensions": EXTENSIONS}
