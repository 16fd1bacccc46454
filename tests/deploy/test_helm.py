"""The chart through the real helm (v4, installed by scripts/setup-host.sh test): `helm lint`,
`helm template` of every backend, collector mode, agent schema and privilege mode the chart
offers (each object checked against the Kubernetes models, and the same objects as the Go
renderer the other chart tests use), and values.schema.json refusing each wrong value."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import CHART, Renderer
from tests.deploy.strict_k8s import load_documents, validate
from tests.deploy.test_chart import BACKENDS, _validate_service_monitor, fixture_values
from tests.deploy.test_values_schema import WRONG

MONITORING = "monitoring.coreos.com/v1"


def helm_run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def template(helm: str, tmp_path: Path, values: dict[str, Any] | None = None, *extra: str) -> list[dict]:
    """`helm template` of the chart with `values`; the objects it renders."""
    args = ["template", "provex", str(CHART), "-n", "provex-system", *extra]
    if values:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["-f", str(path)]
    result = helm_run(helm, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in load_documents(result.stdout, "helm template") if doc]


def _with(base: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    out = {**base}
    for name, section in sections.items():
        out[name] = {**out.get(name, {}), **section}
    return out


CASES: list[tuple[str, dict[str, Any]]] = [("defaults", {})]
CASES += [
    (f"{backend}-{mode}", _with(fixture_values(backend), collector={"enabled": True, "mode": mode}))
    for backend in BACKENDS
    for mode in ("deployment", "daemonset")
]
CASES += [(f"schema-{schema}", {"agent": {"schema": schema}}) for schema in ("raw", "ecs", "ocsf")]
CASES += [
    (f"security-{mode}", {"agent": {"securityContext": {mode: True}}})
    for mode in ("nonRoot", "sysAdmin", "privileged")
]
CASES += [("everything", fixture_values("everything"))]


def test_helm_lint(helm: str, tmp_path: Path) -> None:
    result = helm_run(helm, "lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr
    for name in [*BACKENDS, "everything"]:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(fixture_values(name)))
        result = helm_run(helm, "lint", "--strict", str(CHART), "-f", str(path))
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize(("case", "values"), CASES, ids=[c for c, _ in CASES])
def test_helm_renders_valid_objects(
    helm: str, renderer: Renderer, tmp_path: Path, case: str, values: dict[str, Any]
) -> None:
    objects = template(helm, tmp_path, values, "--api-versions", MONITORING)
    for obj in objects:
        if obj["kind"] == "ServiceMonitor":
            _validate_service_monitor(obj, case)
        else:
            validate(obj, case)
    # The Go renderer the other chart tests use renders the same objects.
    ours = renderer.render(values or None, api_versions=MONITORING).objects()
    assert sorted(yaml.safe_dump(o, sort_keys=True) for _, o in ours) == sorted(
        yaml.safe_dump(o, sort_keys=True) for o in objects
    )


def test_collector_mode_decides_the_kind(helm: str, tmp_path: Path) -> None:
    for mode, kind in (("deployment", "Deployment"), ("daemonset", "DaemonSet")):
        values = _with(fixture_values("elasticsearch"), collector={"enabled": True, "mode": mode})
        kinds = [o["kind"] for o in template(helm, tmp_path, values)]
        assert kinds.count(kind) == (1 if kind == "Deployment" else 2)  # the agent is a DaemonSet too


@pytest.mark.parametrize(("case", "user", "expected"), WRONG, ids=[c for c, _, _ in WRONG])
def test_helm_refuses_wrong_values(helm: str, tmp_path: Path, case: str, user: dict, expected: str) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(user))
    result = helm_run(helm, "template", "provex", str(CHART), "-f", str(path))
    assert result.returncode != 0, f"{case}: helm accepted it"
    assert "don't meet the specifications of the schema" in result.stderr, result.stderr
