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
from exporter.model import EventType, encode_event
from tests.correlate.helpers import container, event

REPO = Path(__file__).resolve().parents[1]


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
    assert (
        line
        == f"provex: cannot open replay file {tmp_path}: is a directory; expected a recording (JSON lines) or -"
    )


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
    line = refused(capsys, "replay", "--schema", "ecs", "--otlp-endpoint", "not a url", str(recording))
    assert line == "provex: --otlp-endpoint: 'not a url' is not a URL: expected http(s)://HOST[:PORT][/path]"
    line = refused(capsys, "replay", "--otlp-endpoint", "ftp://collector:4317", str(recording))
    assert line == "provex: --otlp-endpoint: 'ftp://collector:4317': scheme 'ftp' is not http or https"
    line = refused(capsys, "replay", "--otlp-endpoint", "http://collector:99999", str(recording))
    assert line == "provex: --otlp-endpoint: 'http://collector:99999': the port is not a number 1..65535"


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (
            "server.health_addr=notahostport",
            "--set server.health_addr: 'notahostport' is not HOST:PORT (e.g. 127.0.0.1:9464)",
        ),
        (
            "output.otlp.queue_size=-1",
            "--set output.otlp.queue_size: -1 is not allowed; expected a number >= 1",
        ),
        ("correlate.window_s=-5", "--set correlate.window_s: -5.0 is not allowed; expected a number > 0"),
        (
            "correlate.dedup_window_s=-1",
            "--set correlate.dedup_window_s: -1.0 is not allowed; expected a number >= 0",
        ),
        (
            "probes.wakeup_types=[exec,bogus]",
            "--set probes.wakeup_types: 'bogus' is not an event type;"
            " expected one of: exec, open, mount, setns, unshare, connect, fork, exit,"
            " chdir, chroot, link, rename, dup, accept",
        ),
        ("output.shema=ecs", "--set output.shema: unknown key output.shema; did you mean output.schema?"),
        ("probes.path_max=lots", "--set probes.path_max: 'lots' is not allowed; expected an integer"),
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
    assert line == "provex: --health-addr: '9464' is not HOST:PORT (e.g. 127.0.0.1:9464)"


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
        f"provex: --config {tmp_path}: is a directory, expected a YAML file\n",
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
        line == f"provex: --output {tmp_path / 'no' / 'x.jsonl'}: directory {tmp_path / 'no'} does not exist"
    )


def test_an_endpoint_means_otlp_as_ecs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--print-config", "--otlp-endpoint", "collector:4317"]) == 0
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


def test_an_inherited_endpoint_that_is_not_a_url_is_named() -> None:
    result = provex("run", "--print-config", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "not a url"})
    assert result.returncode == 2
    assert result.stderr == (
        "provex: environment OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' is not a URL:"
        " expected http(s)://HOST[:PORT][/path]\n"
    )


def test_version() -> None:
    result = provex("--version")
    assert (result.returncode, result.stdout) == (0, f"provex {__version__}\n")
