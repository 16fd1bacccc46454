from pathlib import Path

import pytest

from exporter.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "provex.yaml"
    path.write_text(text)
    return path


def test_defaults_load():
    config = load_config(None, environ={})
    assert config.probes.monitor == "containers"
    assert config.enrich.enrichment_wait_ms == 50


def test_unknown_key_is_refused_with_file_line_and_key(tmp_path):
    path = write(tmp_path, "probes:\n  ring_buffer_pages: 64\n  path_mx: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert str(err.value) == f"{path}:3: unknown key probes.path_mx; did you mean probes.path_max?"


def test_wrong_type_is_refused_with_key_and_reason(tmp_path):
    path = write(tmp_path, "output:\n  schema: ecs\nprobes:\n  path_max: lots\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert (
        str(err.value)
        == f"{path}:4: key probes.path_max: 'lots' is not allowed; expected an integer 64..4096"
    )


def test_bad_enum_value(tmp_path):
    path = write(tmp_path, "output:\n  schema: xml\n")
    expected = (
        r"provex.yaml:2: key output.schema: 'xml' is not allowed; expected one of: auto, raw, ecs, ocsf"
    )
    with pytest.raises(ConfigError, match=expected):
        load_config(path, environ={})


def test_semantic_check_ring_buffer_power_of_two():
    with pytest.raises(ConfigError, match="power of two"):
        load_config(None, ["probes.ring_buffer_pages=100"], environ={})


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "probes:\n  path_max: [1,\n")
    with pytest.raises(ConfigError, match=r"provex.yaml:3:1: not valid YAML"):
        load_config(path, environ={})


def test_precedence_file_env_set(tmp_path):
    path = write(tmp_path, "probes:\n  path_max: 128\n  argv_max_args: 4\n")
    config = load_config(
        path,
        ["probes.path_max=1024"],
        environ={"PROVEX_PROBES__PATH_MAX": "512", "PROVEX_PROBES__ARGV_MAX_ARGS": "8"},
    )
    assert config.probes.path_max == 1024  # --set beats env
    assert config.probes.argv_max_args == 8  # env beats file


def test_bad_env_override_names_the_variable():
    with pytest.raises(ConfigError, match="PROVEX_PROBES__PATH_MAX"):
        load_config(None, environ={"PROVEX_PROBES__PATH_MAX": "big"})


def test_node_name_is_the_flag_then_node_name_then_the_host_name():
    import socket

    from exporter.config.schema import node_name

    assert node_name("set", "host", environ={"NODE_NAME": "downward"}) == "set"
    assert node_name("", "host", environ={"NODE_NAME": "downward"}) == "downward"
    assert node_name("", "host", environ={}) == "host"
    assert node_name(environ={}) == socket.gethostname()


def test_cgroup_subtree_scopes_container_monitoring_only():
    config = load_config(None, ["probes.cgroup_subtree=/node-a"], environ={})
    assert config.probes.cgroup_subtree == "/node-a"
    with pytest.raises(ConfigError, match=r"cgroup_subtree.*monitor=all"):
        load_config(None, ["probes.cgroup_subtree=/node-a", "probes.monitor=all"], environ={})
    with pytest.raises(ConfigError, match=r"without \.\."):
        load_config(None, ["probes.cgroup_subtree=/node-a/../node-b"], environ={})


def test_otel_variables_are_read_as_the_sdk_would():
    from exporter.config.otelenv import otel_problems
    from exporter.config.schema import OtlpConfig

    env = {
        "OTEL_EXPORTER_OTLP_TIMEOUT": "soon",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "x",
        "OTEL_EXPORTER_OTLP_HEADERS": "a=b",
    }
    grpc = OtlpConfig(endpoint="http://c:4317", protocol="grpc")
    assert [str(e.source) for e in otel_problems(env, grpc)] == [
        "environment OTEL_EXPORTER_OTLP_TIMEOUT",
        "environment OTEL_EXPORTER_OTLP_LOGS_HEADERS",  # the signal's variable first, as the SDK
    ]
    # what output.otlp sets, the SDK does not read; without an endpoint it reads none of them
    configured = OtlpConfig(endpoint="http://c:4317", protocol="grpc", timeout_s=5, headers={"a": "b"})
    assert list(otel_problems(env, configured)) == []
    assert list(otel_problems(env, OtlpConfig())) == []
    # compression: the gRPC exporter takes gzip only, the HTTP one none, gzip and deflate
    deflate = {"OTEL_EXPORTER_OTLP_COMPRESSION": "deflate"}
    assert len(list(otel_problems(deflate, grpc))) == 1
    assert (
        list(otel_problems(deflate, OtlpConfig(endpoint="http://c:4318/v1/logs", protocol="http/protobuf")))
        == []
    )
