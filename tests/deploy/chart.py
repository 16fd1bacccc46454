"""Render helm/provex with the Go renderer in tests/deploy/render (Helm's template engine).

Helm itself cannot be installed on these machines; the renderer is Go's
text/template with sprig (Debian's golang-github-masterminds-sprig-dev) and
Helm's extra functions, built offline in GOPATH mode.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.deploy.strict_k8s import load_documents

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "provex"
RENDER_SRC = Path(__file__).resolve().parent / "render"
GOPATH = "/usr/share/gocode"
SPRIG = Path(GOPATH) / "src/github.com/Masterminds/sprig"


def go_missing() -> str | None:
    """Why the renderer cannot be built here, or None."""
    if shutil.which("go") is None:
        return "needs `go` (apt: golang-go) to build the Helm template renderer"
    if not SPRIG.is_dir():
        return f"needs sprig at {SPRIG} (apt: golang-github-masterminds-sprig-dev)"
    return None


def build_renderer(out_dir: Path) -> Path:
    """Compile tests/deploy/render offline (no module downloads: GOPATH mode, GOPROXY=off)."""
    binary = out_dir / "render"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(out_dir),
        "GO111MODULE": "off",
        "GOPATH": GOPATH,
        "GOCACHE": str(out_dir / "gocache"),
        "GOPROXY": "off",
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    proc = subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=RENDER_SRC,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"go build of the renderer failed:\n{proc.stderr}")
    return binary


@dataclass
class Rendered:
    values: dict[str, Any]
    manifests: dict[str, str]  # template path -> rendered text
    notes: str

    def objects(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for path in sorted(self.manifests):
            out.extend((path, doc) for doc in load_documents(self.manifests[path], path))
        return out

    def find(self, kind: str, name_suffix: str = "") -> dict[str, Any]:
        hits = [
            o for _, o in self.objects() if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)
        ]
        assert len(hits) == 1, f"expected one {kind} named *{name_suffix}, found {len(hits)}"
        return hits[0]


class RenderError(Exception):
    """The renderer refused the chart or values (what `helm template` would print)."""


class Renderer:
    def __init__(self, binary: Path, work: Path) -> None:
        self.binary = binary
        self.work = work
        self._n = 0

    def render(self, values: dict[str, Any] | None = None, chart: Path = CHART, **kwargs: str) -> Rendered:
        args = [str(self.binary), "-chart", str(chart), "-release", kwargs.get("release", "provex")]
        args += ["-namespace", kwargs.get("namespace", "provex-system")]
        if "api_versions" in kwargs:
            args += ["-api-versions", kwargs["api_versions"]]
        if values:
            self._n += 1
            path = self.work / f"values-{self._n}.yaml"
            path.write_text(yaml.safe_dump(values))
            args += ["-f", str(path)]
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RenderError(proc.stderr.strip())
        data = json.loads(proc.stdout)
        return Rendered(values=data["values"], manifests=data["manifests"], notes=data["notes"])


def values_schema_script() -> ModuleType:
    """scripts/gen_values_schema.py, the generator of values.schema.json, as a module."""
    path = REPO / "scripts" / "gen_values_schema.py"
    spec = importlib.util.spec_from_file_location("gen_values_schema", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_capabilities() -> tuple[set[str], set[str]]:
    """(default, optional) capabilities from the privileges table in helm/provex/README.md."""
    default, optional = set(), set()
    for line in (CHART / "README.md").read_text().splitlines():
        match = re.match(r"^\|\s*`CAP_([A-Z_]+)`\s*\|\s*(\w+)\s*\|", line)
        if match:
            (default if match.group(2) == "default" else optional).add(match.group(1))
    return default, optional
