"""The emit stage's modules import each other without a circle (233ec88 had factory <->
shipper), and the stage reaches no later room of the house (the agent, the CLI)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

EMIT = REPO / "exporter" / "emit"


def _imports(path: Path) -> set[str]:
    """Every exporter module `path` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("exporter"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                exists = (REPO / Path(*candidate.split("."))).with_suffix(".py").exists()
                out.add(candidate if exists else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("exporter")}
    return out


def test_no_module_of_emit_imports_itself_back() -> None:
    graph = {f"exporter.emit.{p.stem}": _imports(p) for p in EMIT.glob("*.py") if p.stem != "__init__"}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert graph["exporter.emit.factory"]  # the check reads something
    assert [m for m in graph if reaches(m, m, {m})] == []


def test_emit_imports_no_later_stage() -> None:
    for path in EMIT.glob("*.py"):
        later = {m for m in _imports(path) if m.startswith(("exporter.agent", "exporter.cli"))}
        assert not later, f"{path.name} imports {later}"
