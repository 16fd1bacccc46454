"""Fixtures for the deployment tests: the Go-built Helm template renderer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.chart import Renderer, build_renderer, go_missing
from tests.tools import tool


@pytest.fixture(scope="session")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Renderer]:
    reason = go_missing()
    if reason:
        # CI installs go (scripts/setup-host.sh test): there a missing go is a failure.
        if os.environ.get("PROVEX_REQUIRE_EBPF") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    work: Path = tmp_path_factory.mktemp("helm-render")
    yield Renderer(build_renderer(work), work)


@pytest.fixture(scope="session")
def helm() -> str:
    """The real helm (v4, from scripts/setup-host.sh test); CI fails without it."""
    return tool("helm")
