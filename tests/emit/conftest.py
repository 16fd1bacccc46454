from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test states the OTEL_* variables it wants; none leak in from the shell."""
    for name in list(os.environ):
        if name.startswith("OTEL_") or name == "NODE_NAME":
            monkeypatch.delenv(name)
