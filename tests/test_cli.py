import subprocess
import sys
from pathlib import Path

import pytest

from exporter import __version__
from exporter.cli.main import make_parser

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


def test_every_config_flag_maps_to_a_real_key():
    parser = make_parser()
    args = parser.parse_args(["run", "--print-config"])
    from exporter.cli.main import CONFIG_FLAGS, build_config

    config = build_config(args)
    for _, key, _ in CONFIG_FLAGS:
        node = config
        for part in key.split("."):
            assert hasattr(node, part), key
            node = getattr(node, part)


def test_rules_lint_and_test_of_the_shipped_rules():
    assert provex("rules", "lint").returncode == 0
    result = provex("rules", "test")
    assert result.returncode == 0, result.stdout + result.stderr
