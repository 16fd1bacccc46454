"""Compile, load and attach the BPF programs in a short-lived child, then hand them over.

`python -m exporter.probes.build SOCKET_FD` reads its request (JSON) on stdin: the compile
flags, and whether the probes may judge files by identity. For that it reads the running
kernel's BTF (exporter.probes.btf) for the offsets of the fields the probes read, here, so the
parser's memory never stays in the agent. It compiles bpf/*.c with BCC, attaches every
program to its tracepoint, and sends the agent, over the inherited unix socket, a manifest
(JSON: the maps, the tracepoints, and whether file identity is on and, if not, why) with the
file descriptors of every map and every attachment (SCM_RIGHTS). It then exits without BCC's
clean-up: the attachments live on in the agent's copies of the fds. So the compiler
(LLVM/clang inside libbcc, ~137 MB at compile time) never stays in the long-lived process.

A failure is one line on stderr and exit status 1; the agent reports it as a ProbeError.
"""

from __future__ import annotations

import json
import os
import socket
import sys

from exporter.probes.btf import VMLINUX, Btf, BtfError, probe_offsets
from exporter.probes.layout import MAPS
from exporter.resources import data_dir

BPF_SOURCES = ("process.c", "file.c", "fsctx.c", "mount.c", "namespace.c", "net.c")


def bpf_program(sources: tuple[str, ...] = BPF_SOURCES) -> bytes:
    """The text that compiles the given bpf/*.c as one program. Each source includes
    provex.h itself (guarded), so any one of them also compiles alone. The include is
    inlined here because BCC rewrites map calls and generates tracepoint argument structs
    only in the main file, never in a header it includes."""
    root = data_dir("bpf")
    header = (root / "provex.h").read_text()
    text = "\n".join((root / name).read_text() for name in sources)
    return text.replace(_INCLUDE, header).encode()


_INCLUDE = '#include "provex.h"'


def compile_and_attach(cflags: list[str]) -> tuple[dict, list[int]]:
    """(manifest, fds): every map by name and every attached tracepoint."""
    from bcc import BPF  # only this child maps BCC and LLVM

    bpf = BPF(text=bpf_program(), cflags=cflags)  # attaches every TRACEPOINT_PROBE
    fds: list[int] = []
    maps: dict[str, int] = {}
    for name in MAPS:
        maps[name] = len(fds)
        fds.append(bpf[name.encode()].map_fd)
    attached: dict[str, int] = {}
    for tracepoint, fd in bpf.tracepoint_fds.items():
        attached[tracepoint.decode()] = len(fds)
        fds.append(fd)
    return {"maps": maps, "tracepoints": attached}, fds


def identity_flags(wanted: bool) -> tuple[list[str], dict]:
    """-D flags that turn on judging files by identity, and what to tell the agent."""
    if not wanted:
        return [], {"enabled": False, "reason": "probes.file_identity is false"}
    try:
        offsets = probe_offsets(Btf.load())
    except BtfError as exc:
        return [], {"enabled": False, "reason": str(exc)}
    flags = ["-DFILE_IDENTITY", *(f"-D{name}={value}" for name, value in offsets.items())]
    return flags, {"enabled": True, "btf": str(VMLINUX)}


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[0]))
    try:
        request = json.loads(sys.stdin.read())
        extra, identity = identity_flags(request.get("file_identity", True))
        manifest, fds = compile_and_attach(request["cflags"] + extra)
        manifest["file_identity"] = identity
        socket.send_fds(sock, [json.dumps(manifest).encode()], fds)
    except Exception as exc:  # one line for the agent to report: a failed build must not be a traceback
        print(f"{type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    # os._exit: BCC's atexit clean-up would detach the programs the agent now holds.
    os._exit(main(sys.argv[1:]))
