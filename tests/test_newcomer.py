"""A newcomer's first minutes: the bundled recording replays right after install (from the
built wheel, outside the repository), `--alerts-only` shows alerts only, and the README's
worked example (write, test and load one rule) runs as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from exporter.resources import sample_recording

REPO = Path(__file__).resolve().parents[1]
CHAIN = "Service-Account Token Read Then Used Against The API Server"


def provex(*args: str, cwd: Path = REPO, pythonpath: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROVEX_"))}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )


def alerts(stdout: str) -> list[dict]:
    return [json.loads(line)["alert"] for line in stdout.splitlines() if line.startswith('{"alert"')]


def test_the_sample_is_a_few_hundred_events_with_one_attack_chain() -> None:
    lines = sample_recording().read_bytes().splitlines()
    assert 200 <= len(lines) <= 1000
    first = provex("replay")
    assert first.returncode == 0, first.stderr
    assert [a["rule_title"] for a in alerts(first.stdout)] == [CHAIN]
    assert len(first.stdout.splitlines()) == len(lines) + 1  # every event, and the alert
    assert provex("replay").stdout == first.stdout  # deterministic: byte-identical alerts


def test_alerts_only() -> None:
    result = provex("replay", "--alerts-only")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() and all(
        line.startswith('{"alert"') for line in result.stdout.splitlines()
    )


@pytest.mark.slow
def test_the_wheel_carries_its_data_and_replays_outside_the_repository(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("provex-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "exporter/samples/recording.jsonl",
        "exporter/taxonomy/data/enterprise-techniques.json",
        "exporter/taxonomy/data/LICENSE.txt",
        "exporter/_data/mappings/ecs.yaml",
        "exporter/_data/bpf/provex.h",
    ):
        assert shipped in names, shipped
    assert not any(n.startswith("tests/") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = provex("replay", "--alerts-only", cwd=elsewhere, pythonpath=str(site))
    assert result.returncode == 0, result.stderr
    assert [a["rule_title"] for a in alerts(result.stdout)] == [CHAIN]
    assert provex("rules", "list", cwd=elsewhere, pythonpath=str(site)).returncode == 0


def _readme_example() -> tuple[str, str, str]:
    """The worked example's rule file name, its YAML and its shell commands, from the README."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("<!-- worked-example -->") : text.index("<!-- /worked-example -->")]
    name, rule = re.search(r"```yaml\n# (\S+)\n(.*?)```", section, re.S).groups()  # type: ignore[union-attr]
    commands = re.search(r"```sh\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    return name, rule, commands


def test_the_readme_worked_example_runs_as_written(tmp_path: Path) -> None:
    name, rule, commands = _readme_example()
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(rule)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROVEX_"))}
    env["PYTHONPATH"] = str(REPO)
    script = f'provex() {{ "{sys.executable}" -m exporter "$@"; }}\nset -euo pipefail\n' + commands
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "2 passed, 0 failed" in out  # rules test: the positive and the negative fixture
    assert "token_read_in_container" in out  # rules list shows it
    titles = [a["rule_title"] for a in alerts(out)]
    assert titles.count("Service-Account Token Read In A Container") == 2  # both token readers
    assert CHAIN in titles
