"""A user's clone has nothing beside it: nothing in the repository reads reference data from outside
it, and CI (.ci/run) proves it by testing a copy of the checkout with nothing beside it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIP = {REPO / "tests" / "fixtures" / "reference", Path(__file__).resolve()}
# A path outside the repository: the sibling folder the reference data was copied from.
OUTSIDE = re.compile(r"\.\./" + "shared|" + r"parent\s*/\s*['\"]" + "shared['\"]|/work/" + "shared")


def _sources() -> list[Path]:
    out = [REPO / "Makefile", REPO / ".ci" / "run", REPO / "pyproject.toml"]
    for folder in ("exporter", "tests", "bench", "scripts", "deploy", "helm"):
        for path in (REPO / folder).rglob("*"):
            wanted = path.is_file() and path.suffix in (".py", ".sh", ".yaml", ".yml", ".tpl", ".go", "")
            if wanted and not any(path == s or s in path.parents for s in SKIP):
                out.append(path)
    return out


def test_nothing_reads_outside_the_repository() -> None:
    offenders = [
        f"{p.relative_to(REPO)}:{n}"
        for p in _sources()
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []


def test_reference_data_carries_its_licences_and_origin() -> None:
    reference = REPO / "tests" / "fixtures" / "reference"
    for licence in (
        "ocsf/LICENSE",
        "ocsf/NOTICE",
        "ecs/LICENSE.txt",
        "ecs/NOTICE.txt",
        "sigma-linux/LICENSE",
    ):
        assert (reference / licence).is_file(), licence
    readme = (reference / "README.md").read_text()
    for origin in ("github.com/ocsf/ocsf-schema", "github.com/elastic/ecs", "github.com/SigmaHQ/sigma"):
        assert origin in readme
    data = REPO / "exporter" / "taxonomy" / "data"
    assert (data / "LICENSE.txt").is_file() and "github.com/mitre/cti" in (data / "README.md").read_text()


def test_ci_runs_the_readme_command_on_a_copy() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "export PROVEX_REQUIRE_EBPF=1" in ci
    assert ci.rstrip().endswith("make test")
    assert "mktemp -d" in ci and 'cd "$work/provex"' in ci
    assert "sudo make test" in (REPO / "README.md").read_text()
