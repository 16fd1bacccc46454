"""Start the real `provex` CLI as a subprocess and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from exporter.agent.losses import EXIT_LOST
from exporter.model import Event, decode_event
from exporter.scenarios.agent import free_port, health_get, parse_metrics, stop_agent, wait_ready

REPO = Path(__file__).resolve().parents[2]


def assert_clean_exit(code: int, stderr_path: Path) -> None:
    """The agent shut down cleanly: exit 0, or exit 3 (it lost records) when every loss was the
    kernel's. These machines are shared: a flood in another session's container overflows the
    ring buffer of every agent on the host, which the agent must report and exit 3 for; that
    is no failure of the test at hand. Any other loss (export, output, mapping) still fails."""
    if code == EXIT_LOST:
        summaries = [
            json.loads(line)
            for line in stderr_path.read_text(errors="replace").splitlines()
            if '"exit_code"' in line
        ]
        assert summaries, f"exit {code} without a summary line"
        lost = summaries[-1]["lost"]
        assert all(key.startswith("kernel/") for key in lost), f"the agent lost records: {lost}"
        return
    assert code == 0, f"agent exited {code}:\n{stderr_path.read_text(errors='replace')[-3000:]}"


def rss_mb(pid: int) -> float:
    """A process's resident memory (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """A process's resident memory, sampled every 50 ms on a thread of its own while the
    `with` block runs: `peak` is the most it held."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples = [rss_mb(pid)]
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="peak-rss", daemon=True)

    @property
    def peak(self) -> float:
        return max(self.samples)

    def __enter__(self) -> PeakRss:
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._sampler.join()

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.samples.append(rss_mb(self.pid))


class Agent:
    """`provex record` (or run) in the background, with its health server."""

    def __init__(
        self,
        tmp: Path,
        *extra: str,
        command: str = "record",
        output: str | Path | None = None,
        repo: Path = REPO,
    ) -> None:
        """`repo`: the checkout whose code runs (a bench's baseline: another release)."""
        self.output = Path(output) if output else tmp / "events.jsonl"
        self.port = free_port()
        self.stderr_path = tmp / "agent.stderr"
        args = [sys.executable, "-m", "exporter", command]
        if "--otlp-endpoint" not in extra:  # a file or an endpoint, never both
            args += ["--output", str(self.output)]
        args += ["--health-addr", f"127.0.0.1:{self.port}", *extra]
        env = {**os.environ, "PYTHONPATH": str(repo)}
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env, cwd=repo
        )
        self._wait_ready()

    def _get(self, path: str) -> tuple[int, str]:
        return health_get(self.port, path)

    def _wait_ready(self, limit_s: float = 90.0) -> None:
        wait_ready(self.process, self.port, limit_s, self.stderr_path.read_text)

    def metrics(self) -> dict[str, float]:
        return parse_metrics(self._get("/metrics")[1])

    def kernel(self, syscall: str, outcome: str) -> float:
        return self.metrics().get(
            f'provex_kernel_events_total{{outcome="{outcome}",syscall="{syscall}"}}', 0.0
        )

    def events(self) -> list[Event]:
        if not self.output.exists():
            return []
        out = []
        for line in self.output.read_bytes().splitlines():
            try:
                out.append(decode_event(line))
            except msgspec.DecodeError:
                break  # a line still being written
        return out

    def wait_for(self, predicate: Callable[[list[Event]], bool], limit_s: float = 20.0) -> list[Event]:
        """Events once predicate(events) holds; the limit only bounds a failing test."""
        deadline = time.monotonic() + limit_s
        while True:
            events = self.events()
            if predicate(events) or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    def stop(self) -> int:
        code = stop_agent(self.process)
        self._stderr.close()
        return code
