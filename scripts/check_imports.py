#!/usr/bin/env python3
"""Check the house plan of the `exporter` package: which room (subpackage, or top-level
module) may import which (MAY_IMPORT), that no modules import each other in a loop, that
the product imports no tests, benches or scripts, and that benches import no tests.

Reads the source with `ast` (nothing is imported or run), so it works on any checkout:

    python scripts/check_imports.py               # this repository
    python scripts/check_imports.py --root DIR    # another checkout (e.g. an old commit's worktree)
    python scripts/check_imports.py --graph       # print the room-to-room arrows

Every import counts, at the top of a module or inside a function (a deferred import is still
a dependency), except those under `if TYPE_CHECKING:` (they never run). Exit 0 when the plan
holds; 1 with one line per broken rule otherwise.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

PACKAGE = "exporter"

# The shared floor: utilities, the event model and the vocabulary every stage may read
# (the field taxonomy, ATT&CK data, host mounts). Each of its rooms names what it reads.
SHARED: dict[str, set[str]] = {
    "exporter": set(),  # the package root: __version__
    "errors": set(),
    "backoff": set(),
    "resources": set(),
    "runtime": set(),
    "compiled": set(),
    "logs": set(),
    "metrics": {"exporter"},
    "yamlfile": {"errors"},
    "model": set(),
    "taxonomy": {"model"},
}


def _may(*rooms: str) -> set[str]:
    return set(SHARED) | set(rooms)


STAGES = ("config", "probes", "source", "enrich", "correlate", "mapping", "emit")
# Which room (a subpackage of exporter/, or a top-level module) may import which. The stages
# follow the event (probes -> source -> enrich -> correlate -> map -> emit) and read the
# configuration; detection reads neither a source nor SIEM content; the agent wires the
# stages into a daemon, scenarios drive the agent in a lab, and the CLI is the one room that
# wires everything (rules, scenarios, SIEM export) together.
MAY_IMPORT: dict[str, set[str]] = {
    **SHARED,
    "config": _may(),
    "probes": _may("config"),
    "source": _may("probes"),
    "enrich": _may("config", "probes"),
    "correlate": _may("config"),
    "mapping": _may("config"),
    "emit": _may("config", "mapping"),
    "siem": _may("correlate"),
    "agent": _may(*STAGES),
    "scenarios": _may(*STAGES, "agent"),
    "cli": _may(*STAGES, "siem", "agent", "scenarios"),
    "__main__": {"cli"},
}
# Code beside the package: the product never imports it; benches import product code and
# bench/helpers/, never tests.
NOT_PRODUCT = ("tests", "bench", "scripts")


def module_name(package_dir: Path, path: Path) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room_of(module: str) -> str:
    """`exporter.correlate.graph` -> `correlate`; `exporter.errors` -> `errors`; `exporter` -> itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING"
        ):
            for child in node.body:
                skipped |= {id(n) for n in ast.walk(child)}
    return skipped


def imports_of(path: Path, module: str, modules: set[str]) -> dict[str, int]:
    """The package's modules `path` imports, each with the first line that does."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = _type_checking_only(tree)
    is_package = path.name == "__init__.py"
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        found.setdefault(name, line)

    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")
                if not is_package:
                    anchor.pop()
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                add(candidate if candidate in modules else base, node.lineno)
    found.pop(module, None)
    return found


def build_graph(root: Path) -> dict[str, dict[str, tuple[Path, int]]]:
    """module -> {imported module: (file, line)} for every module of the package under `root`."""
    package_dir = root / PACKAGE
    paths = {module_name(package_dir, p): p for p in sorted(package_dir.rglob("*.py"))}
    names = set(paths)
    graph: dict[str, dict[str, tuple[Path, int]]] = {}
    for module, path in paths.items():
        graph[module] = {
            target: (path, line)
            for target, line in imports_of(path, module, names).items()
            if target in names
        }
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def foreign_imports(path: Path, forbidden: tuple[str, ...]) -> list[tuple[str, int]]:
    """(top-level name, line) of each import in `path` of a package in `forbidden`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        found += [(name.split(".")[0], node.lineno) for name in names if name.split(".")[0] in forbidden]
    return found


def problems(root: Path) -> list[str]:
    graph = build_graph(root)
    out = ["MAY_IMPORT itself loops: " + " -> ".join(group) for group in cycles(MAY_IMPORT)]
    for module, targets in sorted(graph.items()):
        room = room_of(module)
        if room not in MAY_IMPORT:
            out.append(f"{module}: room {room!r} is not declared (add it to MAY_IMPORT)")
            continue
        for target, (path, line) in sorted(targets.items()):
            other = room_of(target)
            if other != room and other not in MAY_IMPORT[room]:
                where = f"{path.relative_to(root)}:{line}"
                out.append(f"{where}: {module} imports {target}: {room} may not import {other}")
    for group in cycles(graph):
        out.append("import cycle: " + " -> ".join(group + group[:1]))
    for path in sorted((root / PACKAGE).rglob("*.py")):
        for name, line in foreign_imports(path, NOT_PRODUCT):
            out.append(f"{path.relative_to(root)}:{line}: the product imports {name}")
    for path in sorted((root / "bench").rglob("*.py")):
        for name, line in foreign_imports(path, ("tests",)):
            out.append(
                f"{path.relative_to(root)}:{line}: a bench imports {name} (use product code or bench/helpers/)"
            )
    return out


def room_arrows(root: Path) -> list[str]:
    arrows: set[tuple[str, str]] = set()
    for module, targets in build_graph(root).items():
        arrows |= {(room_of(module), room_of(t)) for t in targets if room_of(t) != room_of(module)}
    return [f"{a} -> {b}" for a, b in sorted(arrows)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--graph", action="store_true", help="print the room-to-room arrows")
    args = parser.parse_args(argv)
    if not (args.root / PACKAGE).is_dir():
        print(f"check_imports: no {PACKAGE}/ package under {args.root}", file=sys.stderr)
        return 2
    if args.graph:
        print("\n".join(room_arrows(args.root)))
    found = problems(args.root)
    for line in found:
        print(line)
    if found:
        print(f"check_imports: {len(found)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_imports: {len(build_graph(args.root))} modules, layers hold, no import cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
