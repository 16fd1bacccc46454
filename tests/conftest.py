"""Shared test plumbing.

Tests marked `ebpf` need root, BCC and syscall tracepoints; tests marked
`containers` need runc and busybox-static. Where those are missing they skip
with the exact reason, except when PROVEX_REQUIRE_EBPF=1 (CI on these
machines), where a missing capability is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ebpf_missing() -> str | None:
    if os.geteuid() != 0:
        return f"eBPF tests need root (euid is {os.geteuid()})"
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return f"eBPF tests need BCC (python3-bpfcc): {exc}"
    if not any(Path(p).is_dir() for p in ("/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events")):
        return "eBPF tests need tracefs mounted at /sys/kernel/tracing"
    return None


def _containers_missing() -> str | None:
    for tool in ("runc", "busybox"):
        if shutil.which(tool) is None and not Path(f"/bin/{tool}").exists():
            return f"container tests need {tool} (apt: runc, busybox-static)"
    if os.geteuid() != 0:
        return "container tests need root to run runc"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    required = os.environ.get("PROVEX_REQUIRE_EBPF") == "1"
    checks = {"ebpf": _ebpf_missing(), "containers": _containers_missing()}
    for item in items:
        for marker, reason in checks.items():
            if reason and item.get_closest_marker(marker):
                if required:
                    item.add_marker(pytest.mark.xfail(reason=reason, run=False, strict=True))
                    item.user_properties.append(("required-missing", reason))
                else:
                    item.add_marker(pytest.mark.skip(reason=reason))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Under PROVEX_REQUIRE_EBPF=1 a test that could not run fails the session.
    if os.environ.get("PROVEX_REQUIRE_EBPF") != "1":
        return
    missing = [item.nodeid for item in session.items if dict(item.user_properties).get("required-missing")]
    if missing:
        print(f"\nPROVEX_REQUIRE_EBPF=1 but {len(missing)} eBPF/container tests could not run")
        session.exitstatus = 1
