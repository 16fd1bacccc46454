"""The lab a scenario runs in: runc, a stand-in API server, a payload server, a host process.

`Lab.prepare` turns a scenario into a Pod (registered with the stand-in API
server, so the agent's enrichment really resolves it) and a ContainerSpec at
the matching kubelet-shaped cgroup path; `Lab.run` runs it. hostPath volumes
are temp dirs with fake contents, mounted where the Pod says: no real host
file is ever read or written. All networking is 127.0.0.1, but for a scenario
with its own network: a namespace the lab makes for that trial, whose only
addresses are test-only ones on its loopback (the Pod's, a stand-in for another
Pod's, and the API server's), deleted after the run.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from exporter.scenarios.apiserver import FakeApiServer, make_pod
from exporter.scenarios.library import Scenario
from exporter.scenarios.runc import BUSYBOX_CANDIDATES, ContainerSpec, Mount, Runc

PAYLOAD = b"#!/bin/sh\necho provex-payload\n"
# The same payload for awk (an interpreter that reads its program from a file or stdin).
PAYLOAD_AWK = b'BEGIN { system("echo provex-payload") }\n'
# The API server as a Pod with its own network reaches it (the scenario listens there): the
# agent learns it from the stand-in's Endpoints. Per trial, the Pod's address and another's.
NET_API_IP = "10.250.255.9"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.provex-scenario-token.not-a-real-signature\n"


def _bundle_tar() -> bytes:
    """A tar of data files (a release bundle a benign workload unpacks and reads)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, text in (("bundle/README", b"provex test bundle\n"), ("bundle/data.csv", b"a,b\n1,2\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(text), 0
            tar.addfile(info, io.BytesIO(text))
    return out.getvalue()


def payload_bodies(busybox: str) -> dict[str, bytes]:
    """What the payload server serves: scripts and an ELF to run, data that is only read."""
    return {
        "/payload.sh": PAYLOAD,
        "/payload.awk": PAYLOAD_AWK,
        "/payload.b64": base64.b64encode(PAYLOAD) + b"\n",
        "/payload.elf": Path(busybox).read_bytes(),  # busybox-static: argv[0] picks the applet
        "/healthz": b"ok\n",
        "/index": b"pkg-a 1.0\npkg-b 2.1\n" * 64,
        "/bundle.tar": _bundle_tar(),
    }


class _PayloadHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: nc scripts read to EOF
    bodies: dict[str, bytes] = {}  # set per server

    def do_GET(self) -> None:
        body = self.bodies.get(self.path.split("?")[0])
        self.send_response(200 if body is not None else 404)
        body = body if body is not None else b"not found\n"
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class PayloadServer:
    """HTTP on 127.0.0.1: payload_bodies() (a script, an awk program, a base64 script, an ELF
    to download and run; /healthz, /index and /bundle.tar, data only)."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        handler = type("PayloadHandler", (_PayloadHandler,), {"bodies": bodies})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="provex-payload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@dataclass
class Prepared:
    """One trial of a scenario, ready to run: its Pod and its container."""

    scenario: Scenario
    trial: int
    pod_uid: str
    container_id: str
    pod_name: str
    pod: dict
    spec: ContainerSpec
    netns: str = ""  # the trial's network namespace (own_network), made by prepare


@dataclass
class TrialRun:
    prepared: Prepared
    cgroup_id: int
    returncode: int | None
    stdout: str
    stderr: str
    started_ns: int  # wall clock, just before runc was started
    ended_ns: int

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _uuid(text: str) -> str:
    h = hashlib.sha256(text.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class Lab:
    def __init__(
        self, workdir: str | Path | None = None, node_name: str = "provex-lab", host_root: str | Path = ""
    ) -> None:
        # Absolute: runc resolves a relative rootfs against the bundle directory.
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="provex-lab-")).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # With a host root, a hostPath volume's stand-in is <host_root>/<its host path>, shared
        # by every scenario, as on a node (give the agent the same probes.host_root: the files
        # its Pods mount are then the host's files to it). Without, each scenario has its own.
        self.host_root = Path(host_root).resolve() if host_root else None
        self.node_name = node_name
        self.nonce = secrets.token_hex(4)  # ids differ between labs on one host
        self.runc = Runc(self.workdir / "runc")
        self.busybox = next(p for p in BUSYBOX_CANDIDATES if Path(p).exists())
        self.api = FakeApiServer().start()
        # The Service/Endpoints the agent refreshes name the stand-in itself (and its address
        # inside the network namespaces of own_network scenarios, same port).
        self.api.endpoints = [("127.0.0.1", self.api.port), (NET_API_IP, self.api.port)]
        self._networks: dict[tuple[str, int], int] = {}
        self.kubeconfig = self.api.write_kubeconfig(str(self.workdir / "kubeconfig"))
        self.http = PayloadServer(payload_bodies(self.busybox))
        # A host process whose namespaces a hostPID container enters (/proc/1/ns may be closed).
        self.host_process = subprocess.Popen(["sleep", "86400"], stdin=subprocess.DEVNULL)
        self._host_dirs: dict[tuple[str, int], Path] = {}
        self._rootfs: dict[str, Path] = {}
        self.registered = 0

    def values(self) -> dict[str, str]:
        return {
            "API_IP": "127.0.0.1",
            "API_PORT": str(self.api.port),
            "HTTP_PORT": str(self.http.port),
            "HOST_PID": str(self.host_process.pid),
        }

    def _host_dir(self, scenario: Scenario, index: int) -> Path:
        """The temp dir standing in for a host path (made once per scenario, read-only use)."""
        key = (scenario.name, index)
        if key not in self._host_dirs:
            if self.host_root is not None:
                root = self.host_root / scenario.host_paths[index].host.lstrip("/")
            else:
                root = self.workdir / "host" / f"{scenario.name}-{index}"
            root.mkdir(parents=True, exist_ok=True)
            for rel, content in scenario.host_paths[index].files.items():
                self._write(root / rel, content)
            self._host_dirs[key] = root
        return self._host_dirs[key]

    def _write(self, target: Path, content: str, executable: bool = False) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if content == "@busybox":
            shutil.copy2(self.busybox, target)
            executable = True
        else:
            target.write_text(content)
        if executable:
            target.chmod(0o755)

    def _outside(self, scenario: Scenario, rootfs: Path, container_path: str) -> Path:
        """Where a container path of the scenario lives before it starts: in the stand-in of
        the host_paths volume it falls under (the innermost), else in its rootfs."""
        best: tuple[int, Path] | None = None
        for i, hp in enumerate(scenario.host_paths):
            mount = hp.mount.rstrip("/")
            if (container_path == mount or container_path.startswith(mount + "/")) and (
                best is None or len(mount) > best[0]
            ):
                best = (len(mount), self._host_dir(scenario, i) / container_path[len(mount) :].lstrip("/"))
        return best[1] if best is not None else rootfs / container_path.lstrip("/")

    def _image_rootfs(self, scenario: Scenario) -> str:
        """The scenario's own rootfs with its `image` laid out (and its entries under host
        mounts put in their stand-ins), made once: it exists before any trial starts."""
        if not scenario.image:
            return ""
        if scenario.name not in self._rootfs:
            rootfs = self.runc.derive_rootfs(self.workdir / "images" / scenario.name)
            for entry in scenario.image:
                target = self._outside(scenario, rootfs, entry.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink() or target.exists():
                    target.unlink()  # the shared rootfs's file, replaced in this copy only
                if entry.symlink:
                    target.symlink_to(entry.symlink)
                elif entry.hardlink:
                    target.hardlink_to(self._outside(scenario, rootfs, entry.hardlink))
                else:
                    self._write(target, entry.content or "", entry.executable)
            self._rootfs[scenario.name] = rootfs
        return str(self._rootfs[scenario.name])

    def _network(self, key: tuple[str, int]) -> tuple[str, dict[str, str]]:
        """The trial's network namespace, with test-only addresses on its loopback, and their
        values: the same for the same scenario and trial (a trial may be prepared twice, its
        Pod registered from the first)."""
        n = self._networks.setdefault(key, len(self._networks))
        name = f"provex-lab-{self.nonce}-{n}"
        values = {
            "POD_IP": f"10.250.{n // 100}.{n % 100 * 2 + 2}",
            "PEER_IP": f"10.250.{n // 100}.{n % 100 * 2 + 3}",
            "NET_API_IP": NET_API_IP,
        }
        if not Path(f"/run/netns/{name}").exists():
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
            for address in values.values():
                subprocess.run(
                    ["ip", "-n", name, "addr", "add", f"{address}/32", "dev", "lo"],
                    check=True,
                    capture_output=True,
                )
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        return name, values

    def prepare(self, scenario: Scenario, trial: int = 0) -> Prepared:
        seed = f"{self.nonce}-{scenario.name}-{trial}"
        netns, addresses = self._network((scenario.name, trial)) if scenario.own_network else ("", {})
        uid = _uuid(f"pod-{seed}")
        cid = hashlib.sha256(f"ctr-{seed}".encode()).hexdigest()
        pod_name = f"{scenario.name}-{trial}"[:63]
        container = scenario.klass or "workload"
        volumes = {f"host-{i}": hp.host for i, hp in enumerate(scenario.host_paths)}
        mounts = [(f"host-{i}", hp.mount, hp.read_only) for i, hp in enumerate(scenario.host_paths)]
        pod = make_pod(
            pod_name,
            uid,
            namespace=scenario.namespace,
            node=self.node_name,
            containers=[(container, f"provex.local/scenarios/{scenario.klass}:1", f"containerd://{cid}")],
            host_paths=volumes,
            mounts={container: mounts},
            labels={"app": scenario.name, "provex.io/scenario-kind": scenario.kind, **scenario.labels},
            service_account=scenario.service_account,
            pod_ips=[addresses["POD_IP"]] if addresses else (),
        )
        spec = ContainerSpec(
            ["/bin/sh", "-c", scenario.render({**self.values(), **addresses})],
            name=scenario.name,
            pod_uid=uid,
            container_id=cid,
            mounts=[
                Mount(str(self._host_dir(scenario, i)), hp.mount, hp.read_only)
                for i, hp in enumerate(scenario.host_paths)
            ],
            privileged=scenario.privileged,
            host_pid=scenario.host_pid,
            files={scenario.token: TOKEN} if scenario.token else {},
            netns=f"/run/netns/{netns}" if netns else "",
            rootfs=self._image_rootfs(scenario),
        )
        return Prepared(scenario, trial, uid, cid, pod_name, pod, spec, netns)

    def register(self, prepared: Prepared) -> None:
        """Announce the trial's Pod to the stand-in API server (the agent's watch picks it up)."""
        self.api.add_pod(prepared.pod)
        self.registered += 1

    def run(self, prepared: Prepared, timeout: float = 60.0) -> TrialRun:
        started = time.time_ns()
        try:
            result = self.runc.run(prepared.spec, timeout=timeout)
        finally:
            if prepared.netns:
                subprocess.run(["ip", "netns", "del", prepared.netns], capture_output=True, check=False)
        return TrialRun(
            prepared,
            result.cgroup_id,
            result.returncode,
            result.stdout,
            result.stderr,
            started,
            time.time_ns(),
        )

    def close(self) -> None:
        for n in self._networks.values():  # those prepared but never run
            subprocess.run(
                ["ip", "netns", "del", f"provex-lab-{self.nonce}-{n}"], capture_output=True, check=False
            )
        if self.host_process.poll() is None:
            self.host_process.kill()
        self.host_process.wait()
        self.http.stop()
        self.api.stop()
        self.runc.close()
        shutil.rmtree(self.workdir / "host", ignore_errors=True)
        shutil.rmtree(self.workdir / "images", ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def package_root() -> str:
    """The directory holding the `exporter` package (for a subprocess's PYTHONPATH)."""
    return str(Path(__file__).resolve().parents[2])


def subprocess_env() -> dict[str, str]:
    root = package_root()
    old = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + old if old else "")}
