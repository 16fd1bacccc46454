import subprocess
import sys
from pathlib import Path

import pytest

from exporter import __version__
from exporter.cli.main import CONFIG_FLAGS, build_config, make_parser

REPO = Path(__file__).resolve().parents[1]


def provex(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, cwd=REPO, check=False
    )


def test_version():
    result = provex("version")
    assert result.returncode == 0 and result.stdout.strip() == f"provex {__version__}"


@pytest.mark.parametrize("command", ["run", "record", "replay", "version", "rules"])
def test_every_subcommand_has_help(command):
    result = provex(command, "--help")
    assert result.returncode == 0 and "usage: provex" in result.stdout


def test_print_config_applies_flags_and_sets():
    result = provex("run", "--print-config", "--schema", "ecs", "--set", "probes.path_max=512")
    assert result.returncode == 0
    assert "schema: ecs" in result.stdout and "path_max: 512" in result.stdout


def test_bad_config_is_refused_with_location(tmp_path):
    config = tmp_path / "provex.yaml"
    config.write_text("probes:\n  ring_buffer_pages: sixty\n")
    result = provex("run", "--config", str(config), "--print-config")
    assert result.returncode == 2
    assert f"{config}:2: key probes.ring_buffer_pages" in result.stderr


# A value for each dedicated flag of `provex run`, and what its config key then holds.
FLAG_VALUES = {
    "--output": (["out.jsonl"], "out.jsonl"),
    "--schema": (["ocsf"], "ocsf"),
    "--format": (["text"], "text"),
    "--alerts-only": ([], False),
    "--otlp-endpoint": (["http://127.0.0.1:4318"], "http://127.0.0.1:4318"),
    "--otlp-protocol": (["http/protobuf"], "http/protobuf"),
    "--health-addr": ([":9999"], ":9999"),
    "--kubeconfig": (["/etc/kube/config"], "/etc/kube/config"),
    "--node-name": (["007"], "007"),  # a name, not a number
    "--rules-dir": (["my-rules"], ["my-rules"]),
    "--disable-rule": (["sa_token_read"], ["sa_token_read"]),
    "--monitor": (["all"], "all"),
    "--skip-unsupported-rules": ([], True),
}


@pytest.mark.parametrize(("flag", "key"), [(flag, key) for flag, key, _ in CONFIG_FLAGS])
def test_every_config_flag_sets_its_key(flag: str, key: str) -> None:
    """Each dedicated flag, given alone, is what its config key holds afterwards."""
    words, expected = FLAG_VALUES[flag]
    config = build_config(make_parser().parse_args(["run", flag, *words]))
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    assert value == expected
