"""The real agent (`provex run`) as a subprocess, and the alerts it emits, as they arrive.

Two ways to watch alerts: `FileAlerts` tails the agent's raw JSON-lines output
(`--output FILE`, raw events off: only alerts), which needs nothing but the
package; the evaluation reads them from an OTLP receiver instead (decisive
syscall -> collector). Both hand out `SeenAlert`s: what a scorer needs, and
the wall-clock time the alert was seen.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from exporter.model import Alert
from exporter.scenarios.lab import subprocess_env


@dataclass(frozen=True)
class SeenAlert:
    rule_id: str
    rule_title: str
    container_id: str
    pod_name: str
    pod_namespace: str
    techniques: tuple[str, ...]
    decisive_ts_ns: int
    seen_ns: int  # wall clock when the alert reached us
    followup: bool = False
    alert: Alert | None = None  # the whole record, when the feed has it (raw JSON lines)
    doc: dict | None = None  # the mapped document, when the feed has it (OTLP)

    @property
    def latency_ms(self) -> float:
        return (self.seen_ns - self.decisive_ts_ns) / 1e6


def seen_from_alert(alert: Alert, seen_ns: int) -> SeenAlert:
    event = alert.event
    container = event.container if event is not None else None
    pod = container.pod if container is not None else None
    return SeenAlert(
        rule_id=alert.rule_id,
        rule_title=alert.rule_title,
        container_id=alert.key.get("ContainerId") or (container.id if container else ""),
        pod_name=pod.name if pod else "",
        pod_namespace=pod.namespace if pod else "",
        techniques=tuple(alert.techniques),
        decisive_ts_ns=alert.decisive_ts_ns,
        seen_ns=seen_ns,
        followup=bool(alert.followup_of),
        alert=alert,
    )


class _AlertLine(msgspec.Struct):
    alert: Alert | None = None


class FileAlerts:
    """Tails a JSON-lines file the agent appends alerts to; a thread stamps each on arrival."""

    def __init__(self, path: Path, poll_s: float = 0.002) -> None:
        self.path = path
        self.poll_s = poll_s
        self._seen: list[SeenAlert] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._decoder = msgspec.json.Decoder(_AlertLine)
        self._thread = threading.Thread(target=self._run, name="provex-alert-tail", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self.path.exists():
            if self._stop.wait(self.poll_s):
                return
        buf = b""
        with open(self.path, "rb") as f:
            while not self._stop.is_set():
                chunk = f.read(65536)
                if not chunk:
                    self._stop.wait(self.poll_s)
                    continue
                now = time.time_ns()
                buf += chunk
                *lines, buf = buf.split(b"\n")
                fresh = []
                for line in lines:
                    try:
                        item = self._decoder.decode(line)
                    except msgspec.DecodeError:
                        continue  # a raw event line or garbage: not an alert
                    if item.alert is not None:
                        fresh.append(seen_from_alert(item.alert, now))
                if fresh:
                    with self._cond:
                        self._seen += fresh
                        self._cond.notify_all()

    def alerts(self) -> list[SeenAlert]:
        with self._cond:
            return list(self._seen)

    def wait(self, timeout_s: float) -> None:
        """Return when a new alert arrives or after timeout_s."""
        with self._cond:
            self._cond.wait(timeout_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                continue
    return out


class AgentError(RuntimeError):
    pass


def health_get(port: int, path: str) -> tuple[int, str]:
    """GET a path of the agent's health server on 127.0.0.1: (status, body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def stop_agent(process: subprocess.Popen, limit_s: float = 30.0) -> int:
    """Stop an agent as an operator would (SIGTERM: it flushes and reports its losses), killed
    only when it does not end within `limit_s`; its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def wait_ready(process: subprocess.Popen, port: int, limit_s: float, stderr: Callable[[], str]) -> None:
    """Until /readyz answers 200 (probes attached); AgentError if the agent exits or times out."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AgentError(f"agent exited with {process.returncode}:\n{stderr()}")
        try:
            if health_get(port, "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AgentError(f"agent not ready after {limit_s}s:\n{stderr()}")


@dataclass
class AgentProcess:
    """`provex run` with a health server; `alerts_to_file` adds --output and turns raw events off."""

    workdir: Path
    kubeconfig: str
    node_name: str
    extra: Sequence[str] = ()
    alerts_to_file: bool = True
    process: subprocess.Popen | None = None
    port: int = 0
    feed: FileAlerts | None = None
    stderr_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = self.workdir / "agent.stderr"

    def start(self, ready_s: float = 120.0) -> AgentProcess:
        self.port = free_port()
        args = [sys.executable, "-m", "exporter", "run", "--kubeconfig", self.kubeconfig]
        args += ["--node-name", self.node_name, "--health-addr", f"127.0.0.1:{self.port}"]
        args += list(self.extra)
        if self.alerts_to_file:  # last, so that they win over the caller's --set
            out = self.workdir / "alerts.jsonl"
            out.unlink(missing_ok=True)
            args += ["--output", str(out), "--set", "output.raw_events=false", "--set", "output.schema=raw"]
            self.feed = FileAlerts(out)
        env = subprocess_env()
        if self.alerts_to_file:  # raw JSON lines: an inherited OTLP endpoint would be refused
            for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
                env.pop(key, None)
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env
            )
        self._wait_ready(ready_s)
        return self

    def _get(self, path: str) -> tuple[int, str]:
        return health_get(self.port, path)

    def _wait_ready(self, limit_s: float) -> None:
        assert self.process is not None
        wait_ready(self.process, self.port, limit_s, self.stderr_tail)

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def metrics(self) -> dict[str, float]:
        return parse_metrics(self._get("/metrics")[1])

    def wait_pods(self, count: int, limit_s: float = 30.0) -> None:
        """Until the agent's Pod cache holds at least `count` Pods (the watch delivered them)."""
        deadline = time.monotonic() + limit_s
        while self.metrics().get("provex_k8s_pods", 0) < count:
            if time.monotonic() > deadline:
                raise AgentError(
                    f"the agent did not learn {count} Pods within {limit_s}s:\n{self.stderr_tail()}"
                )
            time.sleep(0.02)

    def kernel_counters(self) -> dict[tuple[str, str], float]:
        """(syscall, outcome) -> count, from provex_kernel_events_total."""
        out = {}
        for key, value in self.metrics().items():
            if key.startswith("provex_kernel_events_total{"):
                labels = dict(part.split("=", 1) for part in key[key.index("{") + 1 : -1].split(","))
                out[(labels["syscall"].strip('"'), labels["outcome"].strip('"'))] = value
        return out

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int:
        code = 0
        if self.process is not None:
            code = stop_agent(self.process)
        if self.feed is not None:
            time.sleep(self.feed.poll_s * 5)  # the tail reads what the agent flushed on exit
            self.feed.close()
        return code
