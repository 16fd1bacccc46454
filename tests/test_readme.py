"""The README stays true: its runnable examples run with the exit status and output they
state, its demo sample adds up to what `provex demo` runs, its counts of the scenario
library are the library's, and no passage is said twice.

A fenced block right after `<!-- runnable -->` is run line by line (bash, `set -o pipefail`,
in an empty directory, `provex` being this checkout). A line's trailing comment states what
must happen: `# exit N` (default 0), then optionally `, prints: TEXT` (stdout, stripped); a
line that exits 0 must also log no warning or error on stderr. A block right after
`<!-- excerpt: COMMAND -->` holds lines COMMAND prints, consecutive and in that order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.resources import sample_recording
from exporter.scenarios.demo import plan
from exporter.scenarios.library import load_library
from tests.test_newcomer import provex

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
EXPECT = re.compile(r"\s#\s*exit (\d+)(?:, prints: (.*?))?(?::.*)?$")


def runnable_lines() -> list[tuple[str, int, str | None]]:
    """(command, expected exit status, expected stdout or None) of every runnable block."""
    out = []
    for block in re.findall(r"<!-- runnable -->\n```sh\n(.*?)```", README, re.S):
        for line in block.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            found = EXPECT.search(line)
            command = line[: found.start()].rstrip() if found else line
            status = int(found.group(1)) if found else 0
            out.append((command, status, found.group(2) if found else None))
    return out


LINES = runnable_lines()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme")


def test_there_are_runnable_examples_and_excerpts() -> None:
    assert len(LINES) >= 8 and EXCERPTS


@pytest.mark.parametrize(("command", "status", "prints"), LINES, ids=[c for c, _, _ in LINES])
def test_a_runnable_line_does_what_the_readme_says(
    workdir: Path, command: str, status: int, prints: str | None
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROVEX_"))}
    script = f'provex() {{ PYTHONPATH="{REPO}" "{sys.executable}" -m exporter "$@"; }}\nset -o pipefail\n{command}\n'
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, cwd=workdir, env=env, check=False, timeout=300
    )
    assert result.returncode == status, result.stdout[-2000:] + result.stderr[-2000:]
    if prints is not None:
        assert result.stdout.strip() == prints
    if status == 0:
        logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
        assert [d for d in logged if d.get("level") in ("warning", "error")] == [], result.stderr
        assert "Traceback" not in result.stderr


def test_the_replayed_sample_is_the_bundled_recording_byte_for_byte(workdir: Path) -> None:
    """The runnable block's first line wrote sample.jsonl: it is the packaged file itself."""
    copy = workdir / "sample.jsonl"
    if not copy.exists():
        test_a_runnable_line_does_what_the_readme_says(workdir, *LINES[0])
    assert copy.read_bytes() == sample_recording().read_bytes()


EXCERPTS = re.findall(r"<!-- excerpt: (.*?) -->\n```\n(.*?)```", README, re.S)


@pytest.mark.parametrize(("command", "block"), EXCERPTS, ids=[c for c, _ in EXCERPTS])
def test_an_excerpt_is_what_its_command_prints(command: str, block: str) -> None:
    words = command.split()
    assert words[0] == "provex"
    result = provex(*words[1:])
    assert result.returncode == 0, result.stderr
    printed, wanted = result.stdout.splitlines(), block.splitlines()
    starts = [n for n, line in enumerate(printed) if line == wanted[0]]
    assert any(printed[n : n + len(wanted)] == wanted for n in starts), "\n".join(wanted)


def test_the_demo_sample_adds_up_to_what_the_demo_runs() -> None:
    section = README[README.index("`provex demo` on a 2-vCPU VM:") :]
    attacks = sum(s.kind == "attack" for s in plan())
    benign = sum(s.kind == "benign" for s in plan())
    assert f"attacks detected     {attacks}/{attacks}" in section
    assert f"benign workloads     {benign}/{benign} raised no alert" in section


def test_the_scenario_library_is_as_counted() -> None:
    library = load_library()
    attacks = [s for s in library if s.kind == "attack"]
    classes = len({s.klass for s in attacks})
    benign = sum(s.kind == "benign" for s in library)
    assert f"holds {len(attacks)} attack scenarios in {classes} classes" in README
    assert f"and {benign} benign ones" in README


def test_no_passage_is_said_twice() -> None:
    """Sentences (of some length) outside code blocks, each at most once."""
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    sentences = [" ".join(s.split()) for s in re.split(r"(?<=[.:;])\s+", prose)]
    seen: set[str] = set()
    repeated = []
    for sentence in sentences:
        if len(sentence) < 60:
            continue
        if sentence in seen:
            repeated.append(sentence)
        seen.add(sentence)
    assert repeated == []
