"""Path resolution and interpreter operands: what a process really touched.

A path in a syscall is relative to things the syscall does not carry: the
process's root directory (chroot), its current directory, the directory fd
it passed, and the symbolic links on the way. The provenance graph keeps
those per process and per container; this module turns (context, path) into
the absolute path inside the container, walking components the way the
kernel does (a `..` after a symlink goes to the parent of its target).

Everything here is pure: no I/O, no clock. Only links the graph has seen
being created (in this container, inside the window) are followed; links that
came with the image or predate the agent are not known, so those paths resolve
as spelled (see README: "What provenance does not resolve").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import msgspec

from exporter import yamlfile
from exporter.model import Resolution

MAX_LINK_HOPS = 40  # the kernel's own limit (ELOOP)

# Syscalls whose `dirfd` field is a real directory fd; the others resolve from the cwd.
DIRFD_SYSCALLS = frozenset({"openat", "openat2", "execveat", "symlinkat", "linkat", "renameat", "renameat2"})
INTERPRETERS_FILE = Path(__file__).resolve().parent / "data" / "interpreters.yaml"

_PROC_SELF = re.compile(r"^/proc/(self|thread-self|\d+)/(exe|cwd|root|fd/\d+)(/.*)?$")


@dataclass(slots=True)
class FsContext:
    """A process's view of the file system, as paths inside its container."""

    root: str | None = None  # None: not known yet
    cwd: str | None = None
    pivoted: bool = False  # the workload's own pivot_root: paths are in its new root


@dataclass(frozen=True, slots=True)
class Resolved:
    path: str  # "" when it cannot be resolved
    status: Resolution


def split(path: str) -> list[str]:
    """Path components; "." dropped, ".." kept (it depends on what came before)."""
    return [c for c in path.split("/") if c and c != "."]


def join(parts: list[str]) -> str:
    return "/" + "/".join(parts)


Links = Callable[[str], str | None]  # a symbolic link's absolute path -> its content, or None


def walk(root: str, start: str, rel: str, links: Links | None, follow_last: bool = True) -> str | None:
    """`rel` taken from directory `start`, never above `root`, through the known
    `links`. None on a link loop."""
    root_parts = split(root)
    stack = split(start)
    if stack[: len(root_parts)] != root_parts:
        stack = list(root_parts)  # a start outside the root cannot be reached from it
    pending = split(rel)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if len(stack) > len(root_parts):
                stack.pop()
            continue
        stack.append(part)
        if not links or (not pending and not follow_last):
            continue
        target = links(join(stack))
        if target is None:
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            return None
        stack.pop()
        if target.startswith("/"):
            stack = list(root_parts)
        pending[:0] = split(target)
    return join(stack)


def resolve(
    ctx: FsContext,
    path: str,
    dirfd_path: str | None = None,
    links: Links | None = None,
    follow_last: bool = True,
) -> Resolved:
    """The absolute path inside the container that `path` names for a process with
    context `ctx`. `dirfd_path`: what the dirfd names, when the call used one
    (None: AT_FDCWD; "" : an fd the graph does not know)."""
    root = ctx.root
    status = Resolution.PIVOTED if ctx.pivoted else Resolution.RESOLVED
    if root is None:
        root, status = "/", Resolution.ROOT_ASSUMED
    if path.startswith("/"):
        start = root
    elif dirfd_path is not None:
        if not dirfd_path:
            return Resolved("", Resolution.DIRFD_UNKNOWN)
        start = dirfd_path
    elif ctx.cwd is not None:
        start = ctx.cwd
    else:
        return Resolved("", Resolution.CWD_UNKNOWN)
    if not links and start == root == "/" and "/." not in path and "//" not in path:
        return Resolved(path.rstrip("/") or "/", status)  # the common case: already canonical
    out = walk(root, start, path, links, follow_last)
    if out is None:
        return Resolved("", Resolution.LINK_LOOP)
    return Resolved(out, status)


def proc_self(path: str) -> tuple[str, str, str] | None:
    """/proc/self/<what>[/rest] (or /proc/<pid>/..., /proc/thread-self/...):
    (pid or "self", what, rest), else None."""
    m = _PROC_SELF.match(path)
    if m is None:
        return None
    return m.group(1), m.group(2), m.group(3) or ""


# ---------------------------------------------------------------- interpreters


@dataclass(frozen=True, slots=True)
class Interpreter:
    """How to find the file an interpreter is handed in its argv."""

    name: str
    # Options after which the interpreter reads no file: the code is an argument (-c, -e)
    # or a module (-m). Everything after them is that code's business.
    inline: frozenset[str]
    # Options that take the next argument as their value (so it is not the operand).
    with_value: frozenset[str]
    # Options whose value IS the file to run (php -f FILE).
    file_option: frozenset[str]
    # Options that end the options ("--").
    end: frozenset[str]
    # Options after which the program comes from standard input (sh -s).
    stdin: frozenset[str] = frozenset()
    # With no operand (or "-") the program comes from standard input (`sh < file`).
    program_on_stdin: bool = False
    # Options whose value can only be attached (perl -Mstrict, -i.bak): alone they take
    # nothing; in a cluster the rest is the value (`-pie` is -p and -i with extension "e").
    glued_value: frozenset[str] = frozenset()
    # Options whose attached value is digits only (perl -l, -0777): a cluster goes on after
    # them (`-lne` is -l, -n, -e).
    digits_value: frozenset[str] = frozenset()
    # The first operand is the program's text, not a file (awk 'prog' file): only a
    # file_option names the program's file.
    operand_is_code: bool = False


# Names of an interpreter's own standard input: handed one as its program's file (`sh
# /dev/stdin`, `awk -f /dev/fd/0`), it reads the program from whatever fd 0 is.
STDIN_DEVICES = frozenset({"/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "/proc/thread-self/fd/0"})


@dataclass(frozen=True, slots=True)
class InterpreterTable:
    by_name: dict[str, Interpreter]
    patterns: tuple[tuple[re.Pattern[str], Interpreter], ...]
    multicall: frozenset[str]  # busybox-style: argv[1] (or the applet name) picks the tool

    def find(self, basename: str) -> Interpreter | None:
        hit = self.by_name.get(basename)
        if hit is not None:
            return hit
        for pattern, interp in self.patterns:
            if pattern.fullmatch(basename):
                return interp
        return None


class _InterpreterSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One entry of interpreters.yaml (its header says what each key means)."""

    names: list[str] | None = None  # None: the entry's own name
    patterns: list[str] = []
    inline: frozenset[str] = frozenset()
    with_value: frozenset[str] = frozenset()
    file_option: frozenset[str] = frozenset()
    end: frozenset[str] = frozenset({"--"})
    stdin: frozenset[str] = frozenset()
    program_on_stdin: bool = False
    glued_value: frozenset[str] = frozenset()
    digits_value: frozenset[str] = frozenset()
    operand_is_code: bool = False


class _InterpretersFile(msgspec.Struct, forbid_unknown_fields=True):
    # Each entry checked on its own below: an error then names its line, not the map's.
    interpreters: dict[str, dict[str, Any]]
    multicall: frozenset[str] = frozenset()


def load_interpreters(path: Path = INTERPRETERS_FILE) -> InterpreterTable:
    """The table; a file of the wrong shape raises YamlFileError at the line at fault."""
    doc = yamlfile.load(path)
    data: _InterpretersFile = doc.convert(_InterpretersFile)
    by_name: dict[str, Interpreter] = {}
    patterns: list[tuple[re.Pattern[str], Interpreter]] = []
    for name in data.interpreters:
        spec: _InterpreterSpec = doc.convert(_InterpreterSpec, "interpreters", name)
        interp = Interpreter(
            name=name,
            inline=spec.inline,
            with_value=spec.with_value,
            file_option=spec.file_option,
            end=spec.end,
            stdin=spec.stdin,
            program_on_stdin=spec.program_on_stdin,
            glued_value=spec.glued_value,
            digits_value=spec.digits_value,
            operand_is_code=spec.operand_is_code,
        )
        for n in spec.names if spec.names is not None else [name]:
            by_name[n] = interp
        for i, p in enumerate(spec.patterns):
            patterns.append((doc.regex(p, "interpreters", name, "patterns", i), interp))
    return InterpreterTable(by_name, tuple(patterns), data.multicall)


@cache
def interpreters() -> InterpreterTable:
    return load_interpreters()


def interpreter_program(
    image: str, argv: list[str], table: InterpreterTable | None = None, by_argv0: bool = False
) -> tuple[str, bool]:
    """(operand, from_stdin): the file an interpreter exec is handed, or whether it reads
    its program from standard input instead (`sh < file`, `sh -s`, `python3 -`, `sh
    /dev/stdin`, `awk -f -`)."""
    table = table or interpreters()
    name = argv[0] if by_argv0 and argv else image
    base = name.rsplit("/", 1)[-1]
    args = argv[1:]
    if base in table.multicall:
        # busybox sh script: the applet is argv[1] when run as busybox itself.
        if not args:
            return "", False
        base, args = args[0].rsplit("/", 1)[-1], args[1:]
    interp = table.find(base)
    if interp is None:
        return "", False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in interp.end or arg in interp.file_option:
            if i + 1 < len(args):
                value = args[i + 1]
                if value in STDIN_DEVICES or (value == "-" and arg in interp.file_option):
                    return "", True
                return value, False
            return "", interp.program_on_stdin
        if arg in interp.inline or _inline_cluster(arg, interp):
            return "", False
        if arg in interp.stdin:
            return "", True
        if arg in interp.with_value:
            i += 2
            continue
        if arg.startswith("-") and arg != "-":
            i += 1
            continue
        if arg == "-":
            return "", interp.program_on_stdin
        if interp.operand_is_code:
            return "", False
        return ("", True) if arg in STDIN_DEVICES else (arg, False)
    return "", interp.program_on_stdin


def _inline_cluster(arg: str, interp: Interpreter) -> bool:
    """Clustered short options: `-ec 'code'` is -e -c; in `-Mfeature` the rest after
    -M is its value, not more options; after perl's -l or -0 only digits are."""
    if not arg.startswith("-") or arg.startswith("--") or len(arg) < 3:
        return False
    i = 1
    while i < len(arg):
        option = f"-{arg[i]}"
        if option in interp.inline:
            return True
        if option in interp.with_value or option in interp.glued_value:
            return False
        i += 1
        if option in interp.digits_value:  # octal, or x and hex (-0x1F): `-le` is -l, -e
            digits = "0123456789abcdefABCDEF" if arg[i : i + 1] == "x" else "01234567"
            i += arg[i : i + 1] == "x"
            while i < len(arg) and arg[i] in digits:
                i += 1
    return False
    for ch in arg[1:]:
        option = f"-{ch}"
        if option in interp.inline:
            return True
        if option in interp.with_value:
            return False
    return False
