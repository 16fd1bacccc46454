"""The Go renderer behaves like `helm template` where the chart relies on it (a tiny chart)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.deploy.chart import Renderer, RenderError

MINI = Path(__file__).resolve().parents[1] / "fixtures" / "deploy" / "mini-chart"


def _out(renderer: Renderer, values: dict | None = None, **kwargs: str) -> dict:
    rendered = renderer.render(values, chart=MINI, **kwargs)
    assert rendered.notes == f"notes for {kwargs.get('release', 'provex')}\n"
    assert set(rendered.manifests) == {"templates/out.yaml"}  # partials and NOTES are not manifests
    return yaml.safe_load(rendered.manifests["templates/out.yaml"])


def test_builtin_objects_and_functions(renderer: Renderer) -> None:
    out = _out(renderer, release="r1", namespace="ns1")
    assert out["name"] == "mini-1.2.3-4.5"  # include + .Chart with Helm's capitalised keys
    assert out["port"] == 8080
    assert out["big"] == "1e+06"  # Helm's JSON numbers: a float64 prints as 1e+06 (Helm's own gotcha)
    assert out["keep"] == {"a": 1, "b": 2}
    assert out["tpl"] == "r1-tpl"
    assert out["missing"] == ""  # missingkey=zero, "<no value>" erased
    assert out["release"] == "r1/ns1/Helm"
    assert out["kube"] == "v1.29.0"
    assert out["hasMonitoring"] is False
    assert len(out["file"]) == 8


def test_values_coalesce_like_helm(renderer: Renderer) -> None:
    rendered = renderer.render({"keep": {"b": None, "c": 3}, "port": 9090}, chart=MINI)
    assert rendered.values["keep"] == {"a": 1, "c": 3}  # maps merge deeply, null deletes
    assert yaml.safe_load(rendered.manifests["templates/out.yaml"])["port"] == 9090


def test_api_versions_reach_capabilities(renderer: Renderer) -> None:
    assert _out(renderer, api_versions="monitoring.coreos.com/v1")["hasMonitoring"] is True


def test_required_passes_a_value_through(renderer: Renderer) -> None:
    assert _out(renderer, {"need": "x"})["need"] == "x"


def test_template_errors_name_the_file(renderer: Renderer, tmp_path: Path) -> None:
    chart = tmp_path / "broken"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.0.1\n")
    (chart / "values.yaml").write_text("a: 1\n")
    (chart / "templates" / "x.yaml").write_text("a: {{ nosuchfunction .Values.a }}\n")
    with pytest.raises(
        RenderError, match=r'broken/templates/x.yaml:1: function "nosuchfunction" not defined'
    ):
        renderer.render(chart=chart)
    (chart / "templates" / "x.yaml").write_text('a: {{ env "HOME" }}\n')  # Helm removes env
    with pytest.raises(RenderError, match='function "env" not defined'):
        renderer.render(chart=chart)
    (chart / "templates" / "x.yaml").write_text('a: {{ required "a.b is required" .Values.b }}\n')
    with pytest.raises(RenderError, match=r"x.yaml:1:\d+: executing .* a.b is required"):
        renderer.render(chart=chart)
    (chart / "values.yaml").write_text("a: [unclosed\n")
    with pytest.raises(RenderError, match=r"values\.yaml"):
        renderer.render(chart=chart)
