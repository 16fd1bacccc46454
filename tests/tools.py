"""External tools the tests drive (helm, kubectl): found in the venv, where
`scripts/setup-host.sh test` installs them, else on PATH. Missing, a test skips with the
reason; under CI (PROVEX_REQUIRE_EBPF=1, as for the eBPF tests) it fails instead."""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

import pytest


def tool(name: str) -> str:
    """The path of `name`; skips (fails under CI) the calling test when it is missing."""
    in_venv = Path(sysconfig.get_path("scripts")) / name
    found = str(in_venv) if os.access(in_venv, os.X_OK) else shutil.which(name)
    if found:
        return found
    reason = f"{name} is not installed (scripts/setup-host.sh test puts it in the venv)"
    if os.environ.get("PROVEX_REQUIRE_EBPF") == "1":
        pytest.fail(f"PROVEX_REQUIRE_EBPF=1: {reason}")
    pytest.skip(reason)
