"""Throwaway OCI containers with runc and a busybox rootfs.

Scenarios, `provex demo`, `provex verify` and the live tests run their
workloads here: real containers, each in its own cgroup and namespaces, at a
kubelet-shaped cgroup path (/kubepods/<qos>/pod<uid>/<container-id>) so that
they look like Pods on a node. They share the host network (loopback only is
ever used), or join a network namespace the caller made (`netns`), and see no
host files except the binds a scenario asks for. `cgroup_parent` puts the
Pods of one "node" under a subtree of their own (two agents on one host).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from exporter.probes.cgroups import cgroup_mounts, find_cgroup2_mount

HELPERS = Path(__file__).resolve().parent / "helpers"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
# Applets linked into the rootfs; busybox --list would give all of them, these are what scenarios use.
APPLETS = [
    "sh",
    "cat",
    "ls",
    "echo",
    "sleep",
    "cp",
    "mv",
    "rm",
    "mkdir",
    "chmod",
    "touch",
    "head",
    "tail",
    "wc",
    "grep",
    "sed",
    "awk",
    "env",
    "id",
    "ps",
    "kill",
    "true",
    "false",
    "nsenter",
    "unshare",
    "mount",
    "umount",
    "chroot",
    "wget",
    "nc",
    "nslookup",
    "hostname",
    "stat",
    "ln",
    "find",
    "xargs",
    "seq",
    "dd",
    "sync",
    "ash",
    "mkfifo",
    "tar",
    "base64",
    "gunzip",
    "link",
    "readlink",
    "tee",
    "cut",
]

ALL_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_NET_ADMIN",
    "CAP_SYS_CHROOT", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP",
]  # fmt: skip
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
                "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]  # fmt: skip


class ContainerError(RuntimeError):
    pass


@dataclass
class Mount:
    host_path: str
    container_path: str
    read_only: bool = True


@dataclass
class ContainerSpec:
    args: list[str]
    name: str = "scenario"
    pod_uid: str = ""  # default: derived from the name
    container_id: str = ""  # default: derived from the name and a counter
    qos: str = "besteffort"
    mounts: list[Mount] = field(default_factory=list)
    privileged: bool = False  # all capabilities (mount, setns and unshare need CAP_SYS_ADMIN)
    host_pid: bool = False  # share the host's PID namespace (like hostPID: true)
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # container path -> content (e.g. a token)
    netns: str = ""  # join this network namespace (a path, e.g. /run/netns/NAME) instead of the host's
    cgroup_parent: str = ""  # a cgroup path above /kubepods (several "nodes" on one host)
    rootfs: str = ""  # a rootfs of its own (Runc.derive_rootfs) instead of the shared one


@dataclass
class ContainerRun:
    spec: ContainerSpec
    cgroup_id: int
    cgroup_path: str  # relative to the cgroup2 mount
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""


_counter = 0
_counter_lock = threading.Lock()


def _ids(spec: ContainerSpec) -> tuple[str, str]:
    global _counter
    with _counter_lock:
        _counter += 1
        n = _counter
    pod = spec.pod_uid or _uuid_from(f"pod-{spec.name}")
    cid = spec.container_id or hashlib.sha256(f"{spec.name}-{os.getpid()}-{n}".encode()).hexdigest()
    return pod, cid


def _uuid_from(text: str) -> str:
    h = hashlib.sha256(text.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def build_helper(out_dir: Path) -> Path:
    """Compile the static syscall helper (gcc -static) into out_dir."""
    target = out_dir / "sysprobe"
    source = HELPERS / "sysprobe.c"
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise ContainerError("gcc is needed to build the static scenario helper (apt: gcc libc6-dev)")
    result = subprocess.run(
        [cc, "-static", "-O2", "-o", str(target), str(source)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ContainerError(f"building {source.name} failed: {result.stderr.strip()}")
    return target


class Runc:
    """Runs containers from one shared read-only busybox rootfs."""

    def __init__(self, workdir: str | Path | None = None) -> None:
        self.runc = shutil.which("runc")
        busybox = next((p for p in BUSYBOX_CANDIDATES if Path(p).exists()), None)
        if self.runc is None or busybox is None:
            raise ContainerError("runc and busybox-static are needed (apt: runc busybox-static)")
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="provex-runc-"))
        self.state_root = self.workdir / "state"
        self.rootfs = self.workdir / "rootfs"
        self.cgroup2 = find_cgroup2_mount()
        # runc makes the container's cgroup path in every hierarchy (each v1 controller too, on
        # a hybrid host); cleaning up means removing it, and the pod directory, in each.
        mountinfo = Path("/proc/self/mountinfo").read_text(errors="surrogateescape")
        self.cgroup_mounts = [Path(p) for p in cgroup_mounts(mountinfo)]
        self._build_rootfs(Path(busybox))

    def _build_rootfs(self, busybox: Path) -> None:
        bin_dir = self.rootfs / "bin"
        if (bin_dir / "sysprobe").exists():
            return
        for sub in ("bin", "proc", "dev", "etc", "tmp", "sys", "host", "var/run/secrets", "root"):
            (self.rootfs / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(busybox, bin_dir / "busybox")
        for applet in APPLETS:
            link = bin_dir / applet
            if not link.exists():
                link.symlink_to("busybox")
        shutil.copy2(build_helper(self.workdir), bin_dir / "sysprobe")
        # The container's own /etc, so that reading it is visibly not the host's.
        (self.rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (self.rootfs / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
        (self.rootfs / "etc/hostname").write_text("scenario\n")

    def derive_rootfs(self, target: Path) -> Path:
        """A rootfs of its own at `target`, the shared one's files hard-linked into it (cheap;
        both are read-only to containers), for an image that adds files of its own."""
        if not target.exists():
            shutil.copytree(self.rootfs, target, symlinks=True, copy_function=os.link)
        return target

    def _config(self, spec: ContainerSpec, cgroup_path: str, bundle: Path) -> dict:
        namespaces: list[dict[str, str]] = [{"type": t} for t in ("ipc", "uts", "mount")]
        if not spec.host_pid:
            namespaces.append({"type": "pid"})
        if spec.netns:
            namespaces.append({"type": "network", "path": spec.netns})
        caps = ALL_CAPS if spec.privileged else DEFAULT_CAPS
        mounts = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=1777"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "ro"]},
        ]
        # Files the scenario asks for (e.g. a service-account token) live in the bundle.
        if spec.files:
            files_dir = bundle / "files"
            for path, content in spec.files.items():
                host_file = files_dir / path.lstrip("/")
                host_file.parent.mkdir(parents=True, exist_ok=True)
                host_file.write_text(content)
            top_dirs = sorted({Path(p).parent.as_posix() for p in spec.files})
            for directory in top_dirs:
                mounts.append(
                    {
                        "destination": directory,
                        "type": "bind",
                        "source": str(files_dir / directory.lstrip("/")),
                        "options": ["rbind", "ro"],
                    }
                )
        for mount in spec.mounts:
            options = ["rbind", "ro" if mount.read_only else "rw"]
            mounts.append(
                {
                    "destination": mount.container_path,
                    "type": "bind",
                    "source": mount.host_path,
                    "options": options,
                }
            )
        env = {"PATH": "/bin", "HOME": "/root", **spec.env}
        return {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": {"uid": 0, "gid": 0},
                "args": spec.args,
                "env": [f"{k}={v}" for k, v in env.items()],
                "cwd": "/",
                "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                "noNewPrivileges": not spec.privileged,
            },
            "root": {"path": spec.rootfs or str(self.rootfs), "readonly": True},
            "hostname": spec.name[:63],
            "mounts": mounts,
            "linux": {
                "cgroupsPath": cgroup_path,
                "namespaces": namespaces,
                "maskedPaths": [] if spec.privileged else ["/proc/kcore", "/proc/keys"],
            },
        }

    def _prepare(self, spec: ContainerSpec) -> tuple[str, Path, str, int]:
        pod, cid = _ids(spec)
        parent = "/" + spec.cgroup_parent.strip("/") if spec.cgroup_parent.strip("/") else ""
        cgroup_path = f"{parent}/kubepods/{spec.qos}/pod{pod}/{cid}"
        bundle = self.workdir / "bundles" / cid[:16]
        bundle.mkdir(parents=True, exist_ok=True)
        (bundle / "config.json").write_text(json.dumps(self._config(spec, cgroup_path, bundle)))
        # Created before runc starts the container so its id is known up front.
        cgroup_dir = self.cgroup2 / cgroup_path.lstrip("/")
        cgroup_dir.mkdir(parents=True, exist_ok=True)
        spec.pod_uid, spec.container_id = pod, cid
        return cid, bundle, cgroup_path, cgroup_dir.stat().st_ino

    def _command(self, cid: str, bundle: Path) -> list[str]:
        return [str(self.runc), "--root", str(self.state_root), "run", "--bundle", str(bundle), cid[:16]]

    def run(self, spec: ContainerSpec, timeout: float = 30.0) -> ContainerRun:
        """Run a container to completion."""
        cid, bundle, cgroup_path, cgroup_id = self._prepare(spec)
        try:
            result = subprocess.run(
                self._command(cid, bundle),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            self._kill(cid)
            raise ContainerError(f"container {spec.name} did not finish in {timeout}s") from exc
        finally:
            self._cleanup(cid, bundle, cgroup_path)
        return ContainerRun(spec, cgroup_id, cgroup_path, result.returncode, result.stdout, result.stderr)

    def start(self, spec: ContainerSpec) -> RunningContainer:
        """Start a long-running container; stop it with .stop()."""
        cid, bundle, cgroup_path, cgroup_id = self._prepare(spec)
        process = subprocess.Popen(
            self._command(cid, bundle),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return RunningContainer(self, spec, cid, bundle, cgroup_path, cgroup_id, process)

    def _kill(self, cid: str) -> None:
        subprocess.run(
            [str(self.runc), "--root", str(self.state_root), "kill", cid[:16], "KILL"],
            capture_output=True,
            check=False,
        )

    def _cleanup(self, cid: str, bundle: Path, cgroup_path: str) -> None:
        subprocess.run(
            [str(self.runc), "--root", str(self.state_root), "delete", "--force", cid[:16]],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(bundle, ignore_errors=True)
        # Remove the container's cgroup (runc usually has) and the pod directory above it, in
        # every hierarchy. Left behind, thousands of them make every walk of the tree slow.
        for mount in self.cgroup_mounts:
            cgroup_dir = mount / cgroup_path.lstrip("/")
            for directory in (cgroup_dir, cgroup_dir.parent):
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    continue  # already removed
                except OSError:
                    break  # still in use: another container of the same Pod

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class RunningContainer:
    runtime: Runc
    spec: ContainerSpec
    cid: str
    bundle: Path
    cgroup_path: str
    cgroup_id: int
    process: subprocess.Popen[str]

    def pid(self) -> int:
        """The container's init pid on the host (waits until runc reports it)."""
        state = self.runtime.state_root / self.cid[:16] / "state.json"
        for _ in range(500):
            try:
                return int(json.loads(state.read_text())["init_process_pid"])
            except (OSError, ValueError, KeyError):
                threading.Event().wait(0.01)
        raise ContainerError(f"container {self.spec.name} did not start")

    def stop(self, timeout: float = 10.0) -> ContainerRun:
        if self.process.poll() is None:
            self.runtime._kill(self.cid)
        try:
            out, err = self.process.communicate(timeout=timeout)
        finally:
            self.runtime._cleanup(self.cid, self.bundle, self.cgroup_path)
        return ContainerRun(self.spec, self.cgroup_id, self.cgroup_path, self.process.returncode, out, err)
