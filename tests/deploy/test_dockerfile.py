"""deploy/Dockerfile, linted structurally (no image can be built on these machines)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.chart import readme_capabilities
from tests.deploy.dockerlint import lint, parse

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
# bpf/ and mappings/ ship in the wheel (pyproject force-include) and arrive with the kernel side.
LATER = frozenset({"bpf", "mappings"})
DIGEST = "sha256:" + "ab" * 32
GOOD = f"""ARG DEBIAN_IMAGE=debian:bookworm-slim@{DIGEST}
FROM ${{DEBIAN_IMAGE}}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3-bpfcc \\
 && rm -rf /var/lib/apt/lists/*
USER 65532
"""


def test_the_dockerfile_passes_the_lint() -> None:
    assert lint(DOCKERFILE.read_text(), REPO, LATER) == []


def test_the_lint_passes_a_minimal_good_file() -> None:
    assert lint(GOOD, REPO) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("@" + DIGEST, ""), "ARG DEBIAN_IMAGE must be"),
        (("FROM ${DEBIAN_IMAGE}", "FROM debian:bookworm"), "FROM debian:bookworm is not the pinned"),
        (("USER 65532", "USER root"), "the last USER is root"),
        (("USER 65532", ""), "no USER"),
        (("USER 65532", "ENV GITHUB_TOKEN=abc"), "ENV GITHUB_TOKEN looks like a secret"),
        (("USER 65532", "ARG NPM_PASSWORD\nUSER 65532"), "ARG NPM_PASSWORD looks like a secret"),
        (("USER 65532", "RUN curl -fsSL https://x.invalid/i.sh | sh\nUSER 65532"), "piped into a shell"),
        (("USER 65532", "ADD https://x.invalid/a.tgz /\nUSER 65532"), "ADD of a URL"),
        ((" \\\n && rm -rf /var/lib/apt/lists/*", ""), "apt lists left in the layer"),
        (("--no-install-recommends ", ""), "without --no-install-recommends"),
        (("apt-get update \\\n && ", ""), "without apt-get update"),
        (("USER 65532", "COPY nothing-here /x\nUSER 65532"), "COPY nothing-here: not in the repository"),
    ],
)
def test_the_lint_refuses_bad_files(change: tuple[str, str], problem: str) -> None:
    bad = GOOD.replace(*change)
    assert bad != GOOD
    problems = lint(bad, REPO)
    assert any(problem in p for p in problems), problems


def test_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse("# c\nFROM x AS y\nRUN a \\\n  # inner comment\n  && b\n")
    assert parsed == [(2, "FROM", "x AS y"), (3, "RUN", "a && b")]
    with pytest.raises(ValueError, match="Dockerfile:1: continuation"):
        parse("RUN a \\\n")


def test_image_shape() -> None:
    ins = parse(DOCKERFILE.read_text())
    runs = " ".join(a for _, i, a in ins if i == "RUN")
    assert "python3-bpfcc" in runs and "useradd --system --uid 65532" in runs
    (entry,) = [a for _, i, a in ins if i == "ENTRYPOINT"]
    assert entry.startswith("["), "ENTRYPOINT must be the exec form (signals reach the agent)"
    assert ("COPY", "deploy/entrypoint.sh /opt/provex/bin/entrypoint") in [(i, a) for _, i, a in ins]
    assert (REPO / "deploy" / "entrypoint.sh").stat().st_mode & 0o111
    assert "!deploy/entrypoint.sh" in (REPO / "deploy" / "Dockerfile.dockerignore").read_text()


def test_file_capabilities_match_the_non_root_mode() -> None:
    (run,) = [a for _, i, a in parse(DOCKERFILE.read_text()) if i == "RUN" and "setcap" in a]
    match = re.search(r"setcap\s+(\S+)\+ep\s+(\S+)", run)
    assert match, run
    assert match.group(2) == "/opt/provex/bin/python3-caps"  # a copy, never /usr/bin/python3
    file_caps = {c.removeprefix("cap_").upper() for c in match.group(1).split(",")}
    default, optional = readme_capabilities()
    # The chart's nonRoot mode grants exactly these: a file capability outside
    # the bounding set makes the exec fail with EPERM.
    assert file_caps == default | {"DAC_READ_SEARCH"}
    assert "DAC_READ_SEARCH" in optional
