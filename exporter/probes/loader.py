"""The life of the BPF programs: compile, attach, configure maps, read counters, detach."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter

from exporter.config.schema import ProbesConfig
from exporter.metrics import REGISTRY
from exporter.model import EventType
from exporter.probes import cgroups
from exporter.probes.bpfsys import BpfMap, RingBuffer
from exporter.probes.layout import (
    CONTROL_BIT,
    COUNTERS,
    DECISIVE_KINDS,
    OPTIONAL_TRACEPOINTS,
    PENDING_MAPS,
    SYSCALLS,
    TYPE_BITS,
    Limits,
)

log = logging.getLogger("provex.probes")

PENDING_SWEPT = Counter(
    "provex_pending_orphans_swept",
    "Enter records whose thread vanished before the syscall's exit (swept from the pairing maps)",
    registry=REGISTRY,
)

BUILD_TIMEOUT_S = 300  # BCC's compile takes ~5 s here; a cold cache on a busy node more
# Entries of the path-prefix trie: configured prefixes and host mounts, plus names the
# workload wrote or linked (learned in the kernel, the oldest pruned past LEARNED_NAMES_MAX).
LPM_ENTRIES = 16384
PATH_INTERESTING, PATH_LEARNED, PATH_SENSITIVE = 1, 2, 3  # path_prefixes values (bpf/provex.h)
LEARNED_NAMES_MAX = 8192
TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))


class ProbeError(RuntimeError):
    """The probes cannot run here; the message says why and what to do."""


@dataclass(frozen=True)
class KernelSupport:
    """What this host offers, found once at start-up and reported."""

    tracefs: Path
    tracepoints: frozenset[str]
    headers: Path
    headers_match: bool  # False: distribution headers linked for another kernel version


def find_tracefs() -> Path:
    for root in TRACEFS_CANDIDATES:
        if (root / "events").is_dir():
            return root
    raise ProbeError(
        "tracefs is not mounted: mount it with `mount -t tracefs tracefs /sys/kernel/tracing` "
        "(make run does this)"
    )


def detect_kernel_support() -> KernelSupport:
    tracefs = find_tracefs()
    wanted = {tp for sc in SYSCALLS for tp in sc.tracepoints} | set(OPTIONAL_TRACEPOINTS)
    present = frozenset(tp for tp in wanted if (tracefs / "events" / tp).is_dir())
    release = platform.release()
    build = Path("/lib/modules") / release / "build"
    if not (build / "include").exists():
        raise ProbeError(
            f"no kernel headers at {build}: install linux-headers-{release}, or run "
            "scripts/setup-host.sh, which links the distribution's nearest headers"
        )
    target = build.resolve()
    # Debian trees are named linux-headers-<release>; anything else is a stand-in.
    headers_match = target.name == f"linux-headers-{release}" or release in str(target)
    return KernelSupport(tracefs, present, target, headers_match)


def _type_mask(names: Iterable[str]) -> int:
    mask = 0
    for name in names:
        try:
            mask |= TYPE_BITS[EventType(name)]
        except (ValueError, KeyError):
            raise ProbeError(f"probes.wakeup_types: unknown event type {name!r}") from None
    return mask


def build_cflags(config: ProbesConfig, support: KernelSupport, limits: Limits) -> list[str]:
    flags = [
        f"-DNSC={len(SYSCALLS)}",
        f"-DNCTR={len(COUNTERS)}",
        f"-DPATH_MAX_LEN={limits.path_max}",
        f"-DARGV_MAX={limits.argv_max}",
        f"-DARG_LEN={limits.arg_len}",
        f"-DLPM_LEN={limits.lpm_len}",
        f"-DEXE_NAME_LEN={limits.exe_name_len}",
        f"-DRINGBUF_PAGES={config.ring_buffer_pages}",
        f"-DDECISIVE_PAGES={config.decisive_ring_pages}",
        f"-DNKINDS={len(DECISIVE_KINDS)}",
        f"-DREPEAT_INTERVAL_NS={int(config.sensitive_repeat_interval_s * 1_000_000_000)}ULL",
        f"-DLPM_ENTRIES={LPM_ENTRIES}",
        f"-DWAKEUP_MASK={_type_mask(config.wakeup_types) | CONTROL_BIT}",  # control records always wake
        f"-DWAKEUP_BYTES={config.wakeup_bytes}",
        f"-DT_CONTROL={CONTROL_BIT}",
    ]
    flags += [f"-DCTR_{name.upper()}={slot}" for slot, name in enumerate(COUNTERS)]
    flags += [f"-DK_{kind.upper()}={slot}" for slot, kind in enumerate(DECISIVE_KINDS)]
    flags += [f"-DT_{kind.name}={bit}" for kind, bit in TYPE_BITS.items()]
    flags += [f"-DSC_{sc.name.upper()}={i}" for i, sc in enumerate(SYSCALLS)]
    for tracepoint in support.tracepoints:
        flags.append(f"-DHAVE_{tracepoint.split('/')[1].upper()}")
    if config.monitor == "all":
        flags.append("-DMONITOR_ALL")
    if config.open_path_prefixes:
        flags.append("-DPATH_FILTER")
    if config.always_send_writes:
        flags.append("-DSEND_WRITES")
    budgets = (
        ("READ", config.flood_read_rate, config.flood_burst_s),
        ("EVENT", config.flood_event_rate, config.flood_burst_s),
        ("DECISIVE", config.decisive_rate, config.decisive_burst_s),
    )
    if any(rate for _, rate, _ in budgets):
        flags.append("-DFLOOD_CONTROL")
        for name, rate, burst_s in budgets:
            # GCRA: one event per interval, a burst of burst_s seconds ahead; rate 0: no limit.
            interval = 1_000_000_000 // rate if rate else 0
            tolerance = int(burst_s * 1_000_000_000) if rate else 2**62
            flags += [f"-D{name}_INTERVAL_NS={interval}ULL", f"-D{name}_TOLERANCE_NS={tolerance}ULL"]
    return flags


class Probes:
    """The attached BPF programs and their maps, held by file descriptor.

    BCC compiles and attaches them in a short-lived child (exporter.probes.build), which
    passes the agent the fds of every map and attachment and exits: the long-lived
    process keeps no compiler. Maps are then read and written through bpf(2) and the
    ring buffer through mmap (exporter.probes.bpfsys).
    """

    def __init__(self, config: ProbesConfig) -> None:
        self.config = config
        self.limits = Limits(
            path_max=config.path_max, argv_max=config.argv_max_args, arg_len=config.argv_arg_max
        )
        self.support = detect_kernel_support()
        if not self.support.headers_match:
            log.warning(
                "kernel headers do not match the running kernel; using the distribution's",
                extra={
                    "fields": {
                        "kernel": platform.release(),
                        "headers": str(self.support.headers),
                        "why_safe": "provex BPF programs read no kernel struct fields",
                    }
                },
            )
        missing = sorted(
            sc.name for sc in SYSCALLS if not all(tp in self.support.tracepoints for tp in sc.tracepoints)
        )
        if missing:
            log.warning("tracepoints missing on this kernel", extra={"fields": {"syscalls": missing}})
        self.missing = missing
        manifest, fds = _build_in_child(
            build_cflags(config, self.support, self.limits), file_identity=config.file_identity
        )
        self._fds = fds
        self.maps = {name: BpfMap(fds[index], name) for name, index in manifest["maps"].items()}
        self.attached = sorted(manifest["tracepoints"])
        # Judging files by identity needs the running kernel's BTF; without it the probes
        # judge by spelling alone, and /readyz and the log say so.
        identity = manifest.get("file_identity", {})
        self.file_identity = bool(identity.get("enabled"))
        self.file_identity_reason = identity.get("reason", "")
        if config.file_identity and not self.file_identity:
            log.warning(
                "files are judged by their spelled path only: no kernel BTF",
                extra={"fields": {"reason": self.file_identity_reason}},
            )
        self._rings: list[RingBuffer] = []
        self.cgroup2 = cgroups.find_cgroup2_mount()
        self._monitored: set[int] = set()
        self._monitored_paths: set[str] = set()
        self._configured: set[bytes] = set()  # path-filter keys set by config or host mounts
        self._sensitive: set[bytes] = set()
        if config.monitor == "containers":
            self._seed_monitored()
        self._set_prefixes(config.open_path_prefixes)
        log.info(
            "probes attached",
            extra={
                "fields": {
                    "tracefs": str(self.support.tracefs),
                    "cgroup2": str(self.cgroup2),
                    "monitor": config.monitor,
                    "monitored_cgroups": len(self._monitored),
                    "tracepoints": len(self.attached),
                    "file_identity": self.file_identity,
                    "syscalls": [sc.name for sc in SYSCALLS if sc.name not in missing],
                }
            },
        )

    @property
    def monitored_cgroups(self) -> list[str]:
        """The cgroup paths monitored (container parents and containers), sorted."""
        return sorted(self._monitored_paths)

    def table(self, name: str) -> BpfMap:
        """A BPF map by name."""
        return self.maps[name]

    # -- which cgroups are monitored -------------------------------------------------

    def _seed_monitored(self) -> None:
        subtree = self._subtree()
        for cgroup_id, relpath in cgroups.walk_container_cgroups(self.cgroup2 / subtree.lstrip("/")):
            self._add_monitored(cgroup_id, subtree.rstrip("/") + relpath)
        for relpath in self.config.extra_cgroups:
            path = self.cgroup2 / relpath.strip("/")
            try:
                self._add_monitored(path.stat().st_ino, relpath)
            except OSError as exc:
                log.warning(
                    "extra cgroup not found", extra={"fields": {"cgroup": relpath, "error": str(exc)}}
                )

    def _add_monitored(self, cgroup_id: int, relpath: str) -> None:
        if cgroup_id in self._monitored:
            return
        self.maps["monitored_cgroups"].update(_u64(cgroup_id), b"\x01")
        self._monitored.add(cgroup_id)
        self._monitored_paths.add("/" + relpath.strip("/"))
        # A cached "not monitored" verdict may exist for this id or its children.
        self.table("verdicts").clear()
        log.debug("monitoring cgroup", extra={"fields": {"cgroup_id": cgroup_id, "cgroup": relpath}})

    def on_cgroup_created(self, cgroup_id: int, hierarchy: int, relpath: str) -> None:
        """A cgroup_mkdir record: monitor it if it is a container."""
        if hierarchy != 0 or self.config.monitor != "containers":
            return  # cgroup v1 hierarchies have their own id space
        if not ("/" + relpath.strip("/") + "/").startswith(self._subtree()):
            return  # another agent's part of the host (probes.cgroup_subtree)
        if cgroups.is_container_cgroup(relpath) and not self._covered(relpath):
            self._add_monitored(cgroup_id, relpath)

    def _subtree(self) -> str:
        """probes.cgroup_subtree as "/a/b/" ("/" for the whole tree)."""
        inner = self.config.cgroup_subtree.strip("/")
        return f"/{inner}/" if inner else "/"

    def _covered(self, relpath: str) -> bool:
        """An ancestor is monitored already: the kernel's ancestor check covers it."""
        parts = relpath.strip("/").split("/")
        return any("/" + "/".join(parts[:n]) in self._monitored_paths for n in range(1, len(parts)))

    # -- open-family path interest -------------------------------------------------------

    def _set_prefixes(self, prefixes: Iterable[str]) -> None:
        for prefix in prefixes:
            self.add_path_prefix(prefix)
        if self.config.open_path_prefixes:
            for path in self.config.sensitive_paths:
                self.add_path_prefix(path, sensitive=True)

    def _lpm_key(self, path: str) -> tuple[bytes, bytes]:
        """struct lpm_key (bpf/provex.h): the prefix length in bits, then the path bytes."""
        raw = path.encode("utf-8", "surrogateescape")[: self.limits.lpm_len]
        return struct.pack("<I", len(raw) * 8) + raw.ljust(self.limits.lpm_len, b"\0"), raw

    def add_path_prefix(self, prefix: str, sensitive: bool = False) -> None:
        """Let open-family paths under `prefix` cross (e.g. a container's host mount);
        `sensitive`: and never sample them away under a flood."""
        key, raw = self._lpm_key(prefix)
        if not sensitive and raw in self._sensitive:
            return
        self.maps["path_prefixes"].update(key, bytes([PATH_SENSITIVE if sensitive else PATH_INTERESTING]))
        self._configured.add(raw)
        if sensitive:
            self._sensitive.add(raw)

    def learn_name(self, path: str) -> None:
        """What the kernel does for a name written or linked by an absolute path, for one
        the workload spelled relatively (resolved by the provenance graph)."""
        key, raw = self._lpm_key(path)
        if raw not in self._configured:
            self.maps["path_prefixes"].update(key, bytes([PATH_LEARNED]))

    def forget_name(self, path: str) -> None:
        """Drop a learned name from the path filter (configured prefixes stay)."""
        key, raw = self._lpm_key(path)
        if raw not in self._configured:
            self.maps["path_prefixes"].delete(key)

    # -- identity-based judgement (bpf/provex.h: sensitive_ids, runtime_ids, ...) ---------

    def set_identity(self, table: str, dev: int, ino: int, value: int = 1) -> None:
        """Register a file by identity in sensitive_ids (1 file, 2 directory) or runtime_ids."""
        self.maps[table].update(_id_key(dev, ino), bytes([value]))

    def forget_identity(self, table: str, dev: int, ino: int) -> None:
        self.maps[table].delete(_id_key(dev, ino))

    def set_runtime_ino(self, ino: int) -> None:
        self.maps["runtime_inos"].update(_u64(ino), b"\x01")

    def mark_judged(self, cgroup_id: int) -> None:
        """The cgroup's view of the sensitive set is registered (or it needs none): the
        kernel judges its reads by identity from now on, instead of sending them up."""
        self.maps["judged_cgroups"].update(_u64(cgroup_id), b"\x01")

    def mark_runtime_task(self, tgid: int) -> None:
        """A process of the container runtime that was running before the probes."""
        self.maps["runtime_tasks"].update(struct.pack("<I", tgid), b"\x01")

    # -- ring buffers and counters -----------------------------------------------------

    def open_ring_buffers(self, callback: Callable[[object, int, int], int]) -> list[RingBuffer]:
        """The decisive ring and the bulk ring, in that order, read by one callback."""
        self._rings = [RingBuffer(self.maps[name].fd, callback) for name in ("decisive", "events")]
        return self._rings

    def counters(self) -> dict[tuple[str, str], int]:
        """Kernel counters summed over CPUs: {(syscall, counter): value}."""
        table = self.maps["counters"]
        out: dict[tuple[str, str], int] = {}
        for index, sc in enumerate(SYSCALLS):
            for slot, name in enumerate(COUNTERS):
                cpus = table.per_cpu(struct.pack("<I", index * len(COUNTERS) + slot))
                out[(sc.name, name)] = sum(struct.unpack("<Q", v)[0] for v in cpus)
        return out

    def set_pressure(self, behind: bool) -> None:
        """Tell the kernel the consumer lags: reads are shed (bpf/provex.h: pressure)."""
        self.maps["pressure"].update(struct.pack("<I", 0), struct.pack("<I", 1 if behind else 0))

    def cgroup_stats(self) -> dict[int, tuple[int, int, int]]:
        """Per cgroup id (cumulative): bulk events sampled away past its own budget, decisive
        events summarized past its own budget, sensitive reads folded as repeats."""
        return {_from_u64(k): struct.unpack("<3Q", v[:24]) for k, v in self.maps["cgroup_stats"].items()}

    def take_summaries(self) -> list[tuple[int, str, tuple[int, int, int, int, int, int, int]]]:
        """The kernel's summaries of decisive events past a cgroup's budget, each taken once:
        (cgroup id, kind, (count, first_ts, last_ts, first_pid, last_pid, first_sc, last_sc))."""
        table = self.maps["summaries"]
        out = []
        for key, value in list(table.items()):
            cgroup_id, kind = struct.unpack("<QI", key[:12])
            table.delete(key)
            if kind < len(DECISIVE_KINDS):
                out.append((cgroup_id, DECISIVE_KINDS[kind], _SUMMARY.unpack_from(value)))
        return out

    def sweep_budgets(self, idle_ns: int = 10_000_000_000) -> int:
        """Forget the budgets of cgroups idle for `idle_ns`: a fresh budget is a full one,
        so this changes nothing but keeps the table from filling with gone containers. Their
        flood counts go with them once reported (the reporter reads them every second)."""
        table = self.maps["budgets"]
        horizon = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - idle_ns
        stale = [
            key for key, value in table.items() if max(struct.unpack(f"<{len(value) // 8}Q", value)) < horizon
        ]
        for key in stale:
            table.delete(key)
            self.maps["cgroup_stats"].delete(key)
        return len(stale)

    def forget_cgroup(self, cgroup_id: int) -> None:
        """A removed cgroup: its budgets, flood counts and verdict go; so does its entry in the
        monitored set (a container's own cgroup: ids are not reused, but the set is bounded)."""
        key = _u64(cgroup_id)
        for table in ("budgets", "cgroup_stats", "verdicts"):
            self.maps[table].delete(key)
        if cgroup_id in self._monitored:
            self.maps["monitored_cgroups"].delete(key)
            self._monitored.discard(cgroup_id)

    def sweep_pending(self, proc: str = "/proc") -> int:
        """Delete enter records whose thread is gone (it died inside the syscall, or its
        tid changed in a multi-threaded execve): they would never see their exit."""
        swept = 0
        for name in PENDING_MAPS:
            table = self.maps[name]
            for key in list(table.keys()):
                tid = struct.unpack("<I", key)[0]
                if not os.path.exists(f"{proc}/{tid}") and table.delete(key):
                    swept += 1
        if swept:
            PENDING_SWEPT.inc(swept)
        return swept

    def close(self) -> None:
        """Detach: closing the attachment fds (the child is long gone) ends the programs."""
        for ring in self._rings:
            ring.close()
        self._rings = []
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


def _u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def _from_u64(raw: bytes) -> int:
    return struct.unpack("<Q", raw[:8])[0]


# struct summary_val (bpf/provex.h): count, first_ts, last_ts, first_pid, last_pid, first_sc, last_sc
_SUMMARY = struct.Struct("<3Q2I2H")


def _id_key(dev: int, ino: int) -> bytes:
    """struct id_key (bpf/provex.h)."""
    return struct.pack("<IIQ", dev, 0, ino)


def _build_in_child(cflags: list[str], file_identity: bool = True) -> tuple[dict, list[int]]:
    """Run exporter.probes.build in a child: it compiles, loads and attaches, sends back the
    fds of every map and attachment, and exits."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter.probes.build", str(child.fileno())],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(child.fileno(),),
        )
        child.close()
        request = {"cflags": cflags, "file_identity": file_identity}
        _, err = proc.communicate(json.dumps(request).encode(), timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip().splitlines()
            raise ProbeError(
                f"BPF programs failed to compile or load: {detail[-1] if detail else proc.returncode}"
            )
        message, fds, _, _ = socket.recv_fds(parent, 1 << 16, 1024)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        raise ProbeError(f"compiling the BPF programs took longer than {BUILD_TIMEOUT_S} s") from exc
    finally:
        parent.close()
    manifest = json.loads(message)
    if len(fds) != len(manifest["maps"]) + len(manifest["tracepoints"]):
        for fd in fds:
            os.close(fd)
        raise ProbeError("the BPF build child sent an incomplete set of file descriptors")
    return manifest, fds
