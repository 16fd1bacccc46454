"""deploy/entrypoint.sh: which kernel headers BCC gets, on real directory trees and symlinks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[2] / "deploy" / "entrypoint.sh"
KVER = "6.8.0-1-test"


class Node:
    """A fake node + container filesystem laid out under tmp_path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules = root / "lib-modules"  # the container's /lib/modules (emptyDir)
        self.host_modules = root / "host" / "lib" / "modules"
        self.host_usr_src = root / "host" / "usr" / "src"
        self.baked = root / "opt" / "kernel-headers"
        self.kheaders = root / "sys" / "kheaders.tar.xz"
        for d in (self.modules, self.host_modules, self.host_usr_src, self.baked):
            d.mkdir(parents=True)

    def tree(self, path: Path) -> Path:
        (path / "include" / "linux").mkdir(parents=True)
        return path

    def run(self, *command: str, uid: int | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PROVEX_KERNEL_RELEASE": KVER,
            "PROVEX_MODULES_DIR": str(self.modules),
            "PROVEX_HOST_MODULES": str(self.host_modules),
            "PROVEX_HOST_USR_SRC": str(self.host_usr_src),
            "PROVEX_BAKED_HEADERS": str(self.baked),
            "PROVEX_KHEADERS": str(self.kheaders),
            "PROVEX_ARCH": "amd64",
            "PROVEX_CAPS_PYTHON": str(self.root / "opt" / "bin" / "python3-caps"),
            "PROVEX_VENV": str(self.root / "opt" / "venv"),
        }
        argv = [str(ENTRYPOINT), *command]
        if uid is not None:
            argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=30)


def log_lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def test_host_headers_behind_an_absolute_symlink_are_linked(node: Node) -> None:
    # Debian/Ubuntu: /lib/modules/$kver/build -> /usr/src/linux-headers-$kver
    build = node.tree(node.host_usr_src / f"linux-headers-{KVER}")
    (node.host_modules / KVER).mkdir()
    (node.host_modules / KVER / "build").symlink_to(f"/usr/src/linux-headers-{KVER}")
    proc = node.run("true")
    assert proc.returncode == 0, proc.stderr
    assert (node.modules / KVER / "build").resolve() == build
    assert (node.modules / KVER / "build" / "include" / "linux").is_dir()
    (line,) = log_lines(proc.stderr)
    assert line["logger"] == "provex.entrypoint"
    assert (line["level"], line["source"], line["kernel"]) == ("info", "host", KVER)


def test_host_headers_behind_relative_symlinks_with_a_source_tree(node: Node) -> None:
    build = node.tree(node.host_usr_src / f"linux-headers-{KVER}-amd64")
    source = node.tree(node.host_usr_src / f"linux-headers-{KVER}-common")
    (node.host_modules / KVER).mkdir()
    (node.host_modules / KVER / "build").symlink_to(f"../../../usr/src/linux-headers-{KVER}-amd64")
    (node.host_modules / KVER / "source").symlink_to(f"../../../usr/src/linux-headers-{KVER}-common")
    proc = node.run("true")
    assert proc.returncode == 0, proc.stderr
    assert (node.modules / KVER / "build").resolve() == build
    assert (node.modules / KVER / "source").resolve() == source


def test_headers_mounted_directly_are_used_as_they_are(node: Node) -> None:
    node.tree(node.modules / KVER / "build")
    proc = node.run("true")
    assert proc.returncode == 0, proc.stderr
    assert not (node.modules / KVER / "build").is_symlink()
    assert log_lines(proc.stderr)[0]["source"] == "mounted"


def test_kernel_kheaders_are_left_to_bcc(node: Node) -> None:
    node.kheaders.parent.mkdir(parents=True)
    node.kheaders.write_bytes(b"\xfd7zXZ")
    # A host build link pointing outside the mounts does not count as headers.
    (node.host_modules / KVER).mkdir()
    (node.host_modules / KVER / "build").symlink_to("/opt/elsewhere/headers")
    proc = node.run("true")
    assert proc.returncode == 0, proc.stderr
    assert not (node.modules / KVER).exists()
    assert log_lines(proc.stderr)[0]["source"] == "kheaders"


def test_baked_distribution_headers_are_the_last_resort(node: Node) -> None:
    node.tree(node.baked / "linux-headers-6.1.0-9-amd64")
    node.tree(node.baked / "linux-headers-6.1.0-9-common")
    newest = node.tree(node.baked / "linux-headers-6.1.0-56-amd64")
    common = node.tree(node.baked / "linux-headers-6.1.0-56-common")
    proc = node.run("true")
    assert proc.returncode == 0, proc.stderr
    assert (node.modules / KVER / "build").resolve() == newest  # version order, not string order
    assert (node.modules / KVER / "source").resolve() == common
    (line,) = log_lines(proc.stderr)
    assert line["level"] == "warning"
    assert line["source"] == "image"
    assert "no kernel structs" in line["why"]


def test_no_headers_anywhere_is_a_clear_error(node: Node) -> None:
    proc = node.run("true")
    assert proc.returncode == 1
    (line,) = log_lines(proc.stderr)
    assert line["level"] == "error"
    assert KVER in line["fix"] and str(node.baked) in line["tried"]


def test_the_command_runs_with_its_arguments(node: Node) -> None:
    node.tree(node.modules / KVER / "build")
    proc = node.run("printf", "%s|", "a b", "c")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "a b|c|"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_non_root_runs_provex_on_the_capability_interpreter() -> None:
    # pytest's tmp_path sits under a root-only directory: use one uid 65532 can enter.
    with tempfile.TemporaryDirectory(prefix="provex-entrypoint-") as tmp:
        os.chmod(tmp, 0o755)
        _non_root(Node(Path(tmp)))


def _non_root(node: Node) -> None:
    node.tree(node.modules / KVER / "build")
    site = node.root / "opt" / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    fake = node.root / "opt" / "bin" / "python3-caps"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho "interp $PYTHONPATH $*"\n')
    fake.chmod(0o755)
    for p in [node.root, *node.root.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    proc = node.run("provex", "run", "--config", "/etc/provex/provex.yaml", uid=65532)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"interp {site} -m exporter run --config /etc/provex/provex.yaml"
    # As root the command runs unchanged.
    proc = node.run("echo", "provex")
    assert proc.stdout.strip() == "provex"
