"""Bad input on the command line: one line naming what was typed, the value and what is
allowed, a non-zero exit, never a traceback (issue 13's cases, each as a user met it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter import __version__
from exporter.cli.main import main
from exporter.config.checks import CHECKS
from exporter.model import EventType, encode_event
from tests.correlate.helpers import container, event

REPO = Path(__file__).resolve().parents[1]
URL = CHECKS["url"].allowed + " (e.g. http://collector:4317)"
HOST_PORT = CHECKS["host_port"].allowed + " (e.g. 127.0.0.1:9464)"


def provex(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROVEX_"))}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**environ, **(env or {})},
        check=False,
    )


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run the CLI in-process; it must exit 2 with exactly one line on stderr."""
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(encode_event(event(EventType.EXEC, path="/bin/id", container=container())) + b"\n")
    return path


def test_replay_of_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, "replay", str(tmp_path))
    assert line == f"provex: replay file {tmp_path}: is a directory; expected a recording (JSON lines) or -"


def test_rules_export_into_a_missing_directory() -> None:
    result = provex("rules", "export", "--target", "esql", "-o", "/nonexistent/dir/x.esql")
    assert result.returncode == 2
    assert (
        result.stderr
        == "ERROR -o /nonexistent/dir/x.esql: directory /nonexistent/dir does not exist; expected a file path\n"
    )


def test_rules_survey_of_a_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, "rules", "survey", "nonexistent")
    assert (
        line
        == "provex rules survey: nonexistent: no such file or directory (expected Sigma rule files or directories)"
    )
    assert refused(capsys, "rules", "lint", "nonexistent").startswith(
        "provex rules lint: nonexistent: no such"
    )


def test_an_endpoint_that_is_not_a_url(capsys: pytest.CaptureFixture[str], recording: Path) -> None:
    for typed in ("not a url", "ftp://collector:4317", "http://collector:99999", "http://[::1:4317"):
        line = refused(capsys, "replay", "--schema", "ecs", "--otlp-endpoint", typed, str(recording))
        assert line == f"provex: --otlp-endpoint: {typed!r} is not allowed; expected {URL}"
    line = refused(capsys, "run", "--print-config", "--otlp-endpoint", "collector:4317")
    assert line == (
        f"provex: --otlp-endpoint: 'collector:4317' is not allowed; expected {URL};"
        " a URL needs its scheme: http://collector:4317 or https://collector:4317?"
    )


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (
            "server.health_addr=notahostport",
            f"--set server.health_addr: 'notahostport' is not allowed; expected {HOST_PORT}",
        ),
        (
            "output.otlp.queue_size=-1",
            "--set output.otlp.queue_size: -1 is not allowed; expected an integer >= 1",
        ),
        ("correlate.window_s=-5", "--set correlate.window_s: -5 is not allowed; expected a number > 0"),
        ("correlate.max_nodes=0", "--set correlate.max_nodes: 0 is not allowed; expected an integer >= 1"),
        (
            "probes.ring_buffer_pages=1073741824",
            "--set probes.ring_buffer_pages: 1073741824 is not allowed;"
            " expected a power of two, 1..65536 (pages of 4 KiB; e.g. 1024)",
        ),
        (
            "correlate.dedup_window_s=-1",
            "--set correlate.dedup_window_s: -1 is not allowed; expected a number >= 0",
        ),
        (
            "probes.wakeup_types=[exec,bogus]",
            "--set probes.wakeup_types: 'bogus' is not allowed;"
            " expected one of: exec, open, mount, setns, unshare, connect, fork, exit,"
            " chdir, chroot, link, rename, dup, accept",
        ),
        ("output.shema=ecs", "--set output.shema: unknown key output.shema; did you mean output.schema?"),
        (
            "probes.path_max=lots",
            "--set probes.path_max: 'lots' is not allowed; expected an integer 64..4096",
        ),
    ],
)
def test_values_are_checked(capsys: pytest.CaptureFixture[str], setting: str, expected: str) -> None:
    assert refused(capsys, "run", "--print-config", "--set", setting) == f"provex: {expected}"


def test_flags_are_named_as_typed(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, "run", "--print-config", "--schema", "elk")
    assert line == "provex: --schema: 'elk' is not allowed; expected one of: auto, raw, ecs, ocsf"
    line = refused(capsys, "run", "--print-config", "--log-level", "loud")
    assert line == "provex: --log-level: 'loud' is not allowed; expected one of: debug, info, warning, error"
    line = refused(capsys, "run", "--print-config", "--health-addr", "9464")
    assert line == f"provex: --health-addr: '9464' is not allowed; expected {HOST_PORT}"


def test_variables_and_files_are_named_too(tmp_path: Path) -> None:
    result = provex("run", "--print-config", env={"PROVEX_OUTPUT__SCHEMA": "elk"})
    assert result.returncode == 2
    assert result.stderr == (
        "provex: environment PROVEX_OUTPUT__SCHEMA: 'elk' is not allowed; expected one of: auto, raw, ecs, ocsf\n"
    )
    config = tmp_path / "provex.yaml"
    config.write_text("output:\n  otlp:\n    queue_sise: 5\n")
    result = provex("run", "--print-config", "--config", str(config))
    assert result.returncode == 2
    assert (
        result.stderr
        == f"provex: {config}:3: unknown key output.otlp.queue_sise; did you mean output.otlp.queue_size?\n"
    )
    result = provex("run", "--print-config", "--config", str(tmp_path))
    assert (result.returncode, result.stderr) == (
        2,
        f"provex: --config {tmp_path}: is a directory; expected a YAML file\n",
    )


def test_contradictory_output_settings(
    capsys: pytest.CaptureFixture[str], recording: Path, tmp_path: Path
) -> None:
    line = refused(
        capsys, "replay", "--schema", "raw", "--otlp-endpoint", "http://127.0.0.1:4317", str(recording)
    )
    assert line == (
        "provex: --otlp-endpoint http://127.0.0.1:4317: OTLP needs the ecs or ocsf schema,"
        " but --schema is raw (JSON lines); drop one of them"
    )
    out = tmp_path / "x.jsonl"
    line = refused(
        capsys, "replay", "--output", str(out), "--otlp-endpoint", "http://127.0.0.1:4317", str(recording)
    )
    assert line == (
        f"provex: --output {out} and --otlp-endpoint http://127.0.0.1:4317: choose one"
        " (a file gets documents one per line, an endpoint gets OTLP)"
    )
    line = refused(capsys, "replay", "--output", str(tmp_path / "no" / "x.jsonl"), str(recording))
    assert (
        line == f"provex: --output {tmp_path / 'no' / 'x.jsonl'}: directory {tmp_path / 'no'} does not exist;"
        " expected a file path in a writable directory"
    )


def test_an_endpoint_means_otlp_as_ecs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--print-config", "--otlp-endpoint", "http://collector:4317"]) == 0
    out = capsys.readouterr().out
    assert "schema: ecs" in out and "endpoint: http://collector:4317" in out and "protocol: grpc" in out


def test_an_inherited_endpoint_does_not_capture_a_replay(recording: Path) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT in the environment: the agent ships there, a replay
    still prints its JSON lines (it exports only to an endpoint it is given)."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    result = provex("replay", str(recording), env=env)
    assert result.returncode == 0, result.stderr
    assert '"exec"' in result.stdout
    result = provex("run", "--print-config", env=env)
    assert "schema: ecs" in result.stdout and "endpoint: http://127.0.0.1:9" in result.stdout
    result = provex("run", "--print-config", "--output", "/tmp/x.jsonl", env=env)
    assert "schema: raw" in result.stdout and "endpoint: ''" in result.stdout


@pytest.mark.parametrize("typed", ["not a url", "http://[::1:4317", "garbage"])
def test_an_inherited_endpoint_that_is_not_a_url_is_named(typed: str) -> None:
    # `garbage` once became http://garbage: an alerts-only agent ran until its first alert was lost
    result = provex("run", "--print-config", env={"OTEL_EXPORTER_OTLP_ENDPOINT": typed})
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"provex: environment OTEL_EXPORTER_OTLP_ENDPOINT: {typed!r} is not allowed; expected {URL}"
    )
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_version() -> None:
    result = provex("--version")
    assert (result.returncode, result.stdout) == (0, f"provex {__version__}\n")


# --- every input checked before any probe is compiled (issue 24) --------------------------


def test_every_error_of_a_config_file_at_once(tmp_path: Path) -> None:
    config = tmp_path / "provex.yaml"
    config.write_text(
        "probes:\n  path_max: 10\n  ring_buffer_pages: 3\ncorrelate:\n  window_s: -5\n  wndow_s: 1\n"
    )
    result = provex("run", "--print-config", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"provex: {config}:2: key probes.path_max: 10 is not allowed; expected an integer 64..4096",
        f"provex: {config}:3: key probes.ring_buffer_pages: 3 is not allowed;"
        " expected a power of two, 1..65536 (pages of 4 KiB; e.g. 1024)",
        f"provex: {config}:5: key correlate.window_s: -5 is not allowed; expected a number > 0",
        f"provex: {config}:6: unknown key correlate.wndow_s; did you mean correlate.window_s?",
    ]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "soon",
            "'soon' is not allowed; expected a number of seconds > 0 (the OpenTelemetry Python SDK reads seconds)",
        ),
        ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "-1", "'-1' is not allowed; expected a number of seconds > 0"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key",
            "'api-key' is not allowed; expected key=value[,key=value...]",
        ),
        (
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "brotli",
            "'brotli' is not allowed; expected one of gzip over grpc",
        ),
        ("OTEL_EXPORTER_OTLP_INSECURE", "maybe", "'maybe' is not allowed; expected true or false"),
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "/nonexistent/ca.pem",
            "=/nonexistent/ca.pem: no such file; expected a readable PEM file",
        ),
        ("OTEL_RESOURCE_ATTRIBUTES", "team", "'team' is not allowed; expected key=value[,key=value...]"),
        ("OTEL_SDK_DISABLED", "true", "'true' turns the OpenTelemetry SDK off: provex would ship nothing"),
        ("OTEL_ATTRIBUTE_COUNT_LIMIT", "-1", "'-1' is not allowed; expected an integer >= 0"),
    ],
)
def test_otel_variables_are_checked_before_anything_starts(
    recording: Path, variable: str, value: str, expected: str
) -> None:
    result = provex("replay", "--otlp-endpoint", "http://127.0.0.1:9", str(recording), env={variable: value})
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"provex: environment {variable}")
    assert expected in line


def test_print_config_prints_only_a_config_that_starts() -> None:
    # OTEL_EXPORTER_OTLP_TIMEOUT=soon passed --print-config, then failed after the BPF compile
    env = {"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}
    result = provex("run", "--print-config", "--otlp-endpoint", "http://127.0.0.1:4317", env=env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("provex: environment OTEL_EXPORTER_OTLP_TIMEOUT: 'soon' is not allowed")
    result = provex("run", "--print-config", "--kubeconfig", "/nonexistent")
    assert (result.returncode, result.stdout) == (2, "")


def test_a_variable_the_config_overrides_is_not_read(recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    env = {"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}
    # no endpoint: the exporter's variables are not read (the file gets OTLP-JSON)
    result = provex("replay", "--schema", "ecs", "--output", str(out), str(recording), env=env)
    assert result.returncode == 0, result.stderr


def test_the_kubeconfig_is_checked_before_the_probes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`--kubeconfig /nonexistent` used to be reported after the probes attached."""
    import exporter.agent.live

    def no_probes(*_: object) -> None:
        raise AssertionError("the probes were built before the inputs were checked")

    monkeypatch.setattr(exporter.agent.live, "Probes", no_probes)
    line = refused(capsys, "run", "--kubeconfig", "/nonexistent")
    assert line == "provex: --kubeconfig /nonexistent: no such file; expected a kubeconfig file"
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate\n")
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\ncurrent-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n"
        f"clusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: {ca}\n"
        "users:\n- name: u\n  user:\n    token: x\n"
    )
    line = refused(capsys, "record", "--output", str(tmp_path / "r.jsonl"), "--kubeconfig", str(kubeconfig))
    assert line.startswith(f"provex: {kubeconfig}: its TLS files cannot be loaded (")
    kubeconfig.write_text(kubeconfig.read_text().replace(str(ca), str(tmp_path / "missing.crt")))
    line = refused(capsys, "run", "--kubeconfig", str(kubeconfig))
    assert line == (
        f"provex: {kubeconfig}:10: clusters[k].certificate-authority: {tmp_path / 'missing.crt'}:"
        " no such file, or not readable"
    )


def test_every_rule_error_in_the_one_style(tmp_path: Path, recording: Path) -> None:
    """Rule errors were a JSON log line with embedded newlines; now one located line each."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "two.yml").write_text(
        "title: a\nid: 4ad30a1c-93a0-4d2c-9f56-1c1d2c3e4f50\nlogsource: {product: linux, category: process_creation}\n"
        "detection:\n  sel:\n    Imagee: /x\n  condition: sel\n---\n"
        "title: b\nid: 4ad30a1c-93a0-4d2c-9f56-1c1d2c3e4f51\nlogsource: {product: linux, category: proces_creation}\n"
        "detection:\n  sel:\n    Image: /x\n  condition: sel\n"
    )
    result = provex("replay", "--rules-dir", str(rules), str(recording))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"provex: {rules / 'two.yml'}:") for line in lines)
    assert "Imagee" in lines[0] and ":6:" in lines[0]
    assert "proces_creation" in lines[1] and ":11:" in lines[1]


UNKNOWN_FIELD_RULE = """\
title: Curl To Some Host
id: 5b0c2f4e-8a61-4d7e-9f27-5c1e2a9d7b11
status: experimental
logsource:
  product: linux
  category: process_creation
detection:
  selection:
    Image|endswith: /curl
    DestinationHostname: evil.example
  condition: selection
level: high
"""


def test_a_rule_with_an_unknown_field_is_refused_unless_skipped(tmp_path: Path, recording: Path) -> None:
    """It was skipped with rc 0 and "OK 0 rules"; `--strict` printed OK and exited 1; run and
    replay only warned, so the rule silently never fired."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "curl.yml").write_text(UNKNOWN_FIELD_RULE)
    where = f"{rules / 'curl.yml'}:10: unknown field 'DestinationHostname'"
    lint = provex("rules", "lint", str(rules))
    assert lint.returncode == 1
    assert lint.stdout.startswith(f"ERROR {where}, which provex has no value for (nearest known field: ")
    assert "OK" not in lint.stdout
    strict = provex("rules", "lint", "--strict", "--skip-unsupported-rules", str(rules))
    assert strict.returncode == 1 and "FAIL (--strict)" in strict.stdout and "OK" not in strict.stdout
    assert provex("rules", "lint", "--skip-unsupported-rules", str(rules)).returncode == 0

    result = provex("replay", "--rules-dir", str(rules), str(recording))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith(f"provex: {where}")
    assert "--skip-unsupported-rules" in result.stderr.splitlines()[-1]
    skipped = provex("replay", "--rules-dir", str(rules), "--skip-unsupported-rules", str(recording))
    assert skipped.returncode == 0, skipped.stderr
    assert "rules skipped: not evaluable here" in skipped.stderr and "Curl To Some Host" in skipped.stderr
    config = tmp_path / "provex.yaml"
    config.write_text(f"correlate:\n  rules_dirs: [{rules}]\n  skip_unsupported_rules: true\n")
    assert provex("replay", "--config", str(config), str(recording)).returncode == 0


def test_arm64_is_refused_at_start_until_the_ring_consumer_orders_its_loads(capsys, monkeypatch) -> None:
    """exporter/probes/bpfsys.py reads ring-buffer records with plain loads: correct under
    x86-64's memory ordering, not arm64's. A live command there is refused before anything
    starts; replay (no kernel) runs anywhere."""
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    line = refused(capsys, "run", "--set", "enrich.kubernetes=false")
    assert line.startswith("provex: provex run: this machine is aarch64: ")
    assert line.endswith("; run it on x86_64 (replay runs anywhere)")
    assert main(["replay", "--set", "correlate.default_rules=false", "--output", os.devnull]) == 0
