"""A structural lint for deploy/Dockerfile: each rule returns "Dockerfile:LINE: problem" strings."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

Instruction = tuple[int, str, str]  # (line, INSTRUCTION, arguments)

_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|CREDENTIAL)", re.I)
_SECRET_VALUES = (
    r"AKIA[0-9A-Z]{16}",
    r"gh[pousr]_[A-Za-z0-9]{20,}",
    r"-----BEGIN [A-Z ]*PRIVATE KEY",
    r"://[^/\s:]+:[^@\s]+@",
)


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit inside a continued RUN, too
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        instruction, _, args = " ".join(p for p in pending if p).partition(" ")
        pending = []
        out.append((start, instruction.upper(), args.strip()))
    if pending:
        raise ValueError(f"Dockerfile:{start}: continuation runs off the end")
    return out


def base_pinned(ins: list[Instruction]) -> list[str]:
    problems = []
    first_from = next((i for i, (_, name, _) in enumerate(ins) if name == "FROM"), len(ins))
    args = dict(a.split("=", 1) for _, name, a in ins[:first_from] if name == "ARG" and "=" in a)
    if not re.fullmatch(r"debian:bookworm(-slim)?@sha256:[0-9a-f]{64}", args.get("DEBIAN_IMAGE", "")):
        problems.append("Dockerfile:1: ARG DEBIAN_IMAGE must be debian:bookworm[-slim]@sha256:<64 hex>")
    stages: set[str] = set()
    for line, name, arg in ins:
        if name == "FROM":
            parts = arg.split()
            if parts[0] != "${DEBIAN_IMAGE}" and parts[0] not in stages:
                problems.append(f"Dockerfile:{line}: FROM {parts[0]} is not the pinned ${{DEBIAN_IMAGE}}")
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
    return problems


def no_secrets(ins: list[Instruction], text: str) -> list[str]:
    problems = []
    for line, name, arg in ins:
        if name in ("ENV", "ARG"):
            for var in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?:=|$)", arg):
                if _SECRET_NAME.search(var):
                    problems.append(f"Dockerfile:{line}: {name} {var} looks like a secret")
    for pattern in _SECRET_VALUES:
        if re.search(pattern, text):
            problems.append(f"Dockerfile: a credential-like value matches {pattern}")
    return problems


def non_root(ins: list[Instruction]) -> list[str]:
    users = [(line, arg) for line, name, arg in ins if name == "USER"]
    if not users:
        return ["Dockerfile: no USER, the image runs as root by default"]
    line, user = users[-1]
    if user.split(":")[0] in ("0", "root"):
        return [f"Dockerfile:{line}: the last USER is root"]
    return []


def no_pipe_to_shell(ins: list[Instruction]) -> list[str]:
    problems = []
    for line, name, arg in ins:
        if name == "RUN" and re.search(r"(curl|wget)[^;&]*\|\s*(sudo\s+)?(ba|da|z)?sh\b", arg):
            problems.append(f"Dockerfile:{line}: a download piped into a shell")
        if name == "ADD" and re.search(r"https?://", arg):
            problems.append(f"Dockerfile:{line}: ADD of a URL (unverified download)")
    return problems


def apt_clean(ins: list[Instruction]) -> list[str]:
    problems = []
    for line, name, arg in ins:
        if name != "RUN" or "apt-get" not in arg:
            continue
        if "apt-get update" not in arg:
            problems.append(f"Dockerfile:{line}: apt-get without apt-get update in the same layer")
        if not re.search(r"rm -rf [^&;]*/var/lib/apt/lists/\*", arg):
            problems.append(f"Dockerfile:{line}: apt lists left in the layer")
        if "apt-get install" in arg and "--no-install-recommends" not in arg:
            problems.append(f"Dockerfile:{line}: apt-get install without --no-install-recommends")
    return problems


def copies_exist(ins: list[Instruction], repo: Path, later: set[str]) -> list[str]:
    problems = []
    for line, name, arg in ins:
        if name == "COPY" and "--from=" not in arg:
            *sources, _dest = shlex.split(arg)
            problems += [
                f"Dockerfile:{line}: COPY {src}: not in the repository"
                for src in sources
                if not (repo / src).exists() and src not in later
            ]
    return problems


def lint(text: str, repo: Path, later: frozenset[str] = frozenset()) -> list[str]:
    ins = parse(text)
    return [
        *base_pinned(ins),
        *no_secrets(ins, text),
        *non_root(ins),
        *no_pipe_to_shell(ins),
        *apt_clean(ins),
        *copies_exist(ins, repo, set(later)),
    ]
