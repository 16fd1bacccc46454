"""The capabilities the chart grants are enough, and each one is needed: proved on the live kernel.

Each case runs a BCC program shaped like provex's probes (syscall tracepoint,
bpf_probe_read_user_str, BPF ring buffer) in a child whose capability
bounding set holds only the capabilities under test, as the chart's
`capabilities: {drop: [ALL], add: [...]}` does for the agent container.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.chart import readme_capabilities

PROBE = Path(__file__).resolve().parents[1] / "fixtures" / "deploy" / "cap_probe.py"
PYTHON = "/usr/bin/python3"  # the interpreter python3-bpfcc is built for
CAP_NUMBERS = {
    "DAC_READ_SEARCH": 2,
    "SYS_PTRACE": 19,
    "SYS_ADMIN": 21,
    "SYS_RESOURCE": 24,
    "PERFMON": 38,
    "BPF": 39,
}

pytestmark = [pytest.mark.ebpf, pytest.mark.slow]


def _bounding() -> set[str]:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            mask = int(line.split()[1], 16)
            return {f"cap_{n}" for n in _all_cap_names() if mask >> _all_cap_names()[n] & 1}
    raise AssertionError("no CapBnd in /proc/self/status")


def _all_cap_names() -> dict[str, int]:
    # capsh knows the kernel's names; ask it once for every number the kernel has.
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    names = {}
    for number in range(last + 1):
        out = subprocess.run(
            ["capsh", f"--decode={1 << number:x}"], capture_output=True, text=True, check=True
        )
        names[out.stdout.strip().split("=", 1)[1].removeprefix("cap_")] = number
    return names


@pytest.fixture(scope="module")
def tools() -> None:
    for tool in ("capsh", "setcap", "setpriv"):
        if shutil.which(tool) is None:
            reason = f"needs {tool} (apt: libcap2-bin, util-linux)"
            if os.environ.get("PROVEX_REQUIRE_EBPF") == "1":
                pytest.fail(reason)
            pytest.skip(reason)


def run_with(keep: set[str], argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run argv as root with a bounding set of only `keep` (names without CAP_)."""
    drop = sorted(c for c in _bounding() if c.removeprefix("cap_").upper() not in keep)
    command = ["capsh", f"--drop={','.join(drop)}", "--", "-c", shlex.join(argv)]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=240)


def probe(keep: set[str]) -> dict[str, Any]:
    proc = run_with(keep, [PYTHON, str(PROBE)])
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"probe printed nothing: {proc.stderr[-2000:]}"
    result = json.loads(lines[-1])
    result["stderr"] = proc.stderr[-2000:]
    return result


def _held(result: dict[str, Any]) -> set[str]:
    mask = int(result["cap_eff"], 16)
    return {name for name, number in CAP_NUMBERS.items() if mask >> number & 1}


def test_the_default_capabilities_are_enough(tools: None) -> None:
    default, _ = readme_capabilities()
    result = probe(default)
    # SYS_RESOURCE may be missing from this machine's own bounding set: only grant what exists.
    assert {"BPF", "PERFMON"} <= _held(result) <= default
    assert result["ok"], result


@pytest.mark.parametrize("missing", ["BPF", "PERFMON"])
def test_without_bpf_or_perfmon_nothing_loads(tools: None, missing: str) -> None:
    default, _ = readme_capabilities()
    result = probe(default - {missing})
    assert missing not in _held(result)
    assert not result["ok"], result


def test_bpf_and_perfmon_alone_suffice_on_this_kernel(tools: None) -> None:
    # >= 5.11 charges BPF memory to the memory cgroup, so SYS_RESOURCE is only
    # for 5.8-5.10 (RLIMIT_MEMLOCK); SYS_PTRACE is for /proc, not for BPF.
    result = probe({"BPF", "PERFMON"})
    assert _held(result) == {"BPF", "PERFMON"}
    assert result["ok"], result


@pytest.fixture
def root_process() -> Iterator[int]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_sys_ptrace_is_what_reads_proc_of_other_processes(tools: None, root_process: int) -> None:
    default, _ = readme_capabilities()
    paths = [f"/proc/{root_process}/exe", f"/proc/{root_process}/ns/mnt"]
    script = f"import os; print([os.readlink(p) for p in {paths!r}])"
    allowed = run_with(default, [sys.executable, "-c", script])
    assert allowed.returncode == 0, allowed.stderr
    assert "sleep" in allowed.stdout and "mnt:[" in allowed.stdout
    denied = run_with(default - {"SYS_PTRACE"}, [sys.executable, "-c", script])
    assert denied.returncode != 0
    assert "PermissionError" in denied.stderr
    # /proc/PID/cgroup (container attribution) needs nothing.
    cgroup = run_with({"BPF", "PERFMON"}, ["cat", f"/proc/{root_process}/cgroup"])
    assert cgroup.returncode == 0 and cgroup.stdout


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    # Somewhere uid 65532 can enter (pytest's tmp_path is under a root-only directory).
    with tempfile.TemporaryDirectory(prefix="provex-caps-") as tmp:
        os.chmod(tmp, 0o755)
        yield Path(tmp)


@pytest.mark.parametrize(
    ("file_caps", "works"),
    [({"BPF", "PERFMON", "DAC_READ_SEARCH"}, True), ({"BPF", "PERFMON"}, False)],
)
def test_non_root_needs_file_capabilities_and_dac_read_search(
    tools: None, shared_dir: Path, file_caps: set[str], works: bool
) -> None:
    interpreter = shared_dir / "python3-caps"
    shutil.copy2(os.path.realpath(PYTHON), interpreter)
    probe_copy = shared_dir / "cap_probe.py"
    shutil.copy2(PROBE, probe_copy)
    probe_copy.chmod(0o644)
    caps = ",".join(f"cap_{c.lower()}" for c in sorted(file_caps))
    subprocess.run(["setcap", f"{caps}+ep", str(interpreter)], check=True)
    proc = subprocess.run(
        ["setpriv", "--reuid=65532", "--regid=65532", "--clear-groups", str(interpreter), str(probe_copy)],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        cwd=shared_dir,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stderr[-2000:]
    result = json.loads(lines[-1])
    assert _held(result) == file_caps
    # Without DAC_READ_SEARCH, BCC cannot read the tracepoint's format in the
    # root-only tracefs and the program does not compile.
    assert result["ok"] is works, result
