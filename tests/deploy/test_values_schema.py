"""values.schema.json: accepts the shipped values, refuses wrong ones as `helm install` would."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.chart import CHART, values_schema_script

GENERATOR = values_schema_script()
SCHEMA_PATH = GENERATOR.SCHEMA_PATH

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "deploy"


def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def _defaults() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def coalesce(user: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of user values over values.yaml (maps deep, null deletes)."""
    out = copy.deepcopy(defaults)
    for key, value in user.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = coalesce(value, out[key])
        else:
            out[key] = value
    return out


def _errors(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(_schema())
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path))
    ]


def test_schema_file_is_current() -> None:
    # The schema embeds exporter/config/schema.py; regenerate when that changes.
    assert SCHEMA_PATH.read_text() == GENERATOR.render(), (
        "helm/provex/values.schema.json is stale: run `.venv/bin/python scripts/gen_values_schema.py`"
    )


def test_config_table_of_the_chart_readme_is_current() -> None:
    readme = GENERATOR.README_PATH.read_text()
    assert readme == GENERATOR.render_readme(readme), (
        "the config table of helm/provex/README.md is stale: run `.venv/bin/python scripts/gen_values_schema.py`"
    )


def test_schema_is_a_valid_draft7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(_schema())


def test_default_values_are_accepted() -> None:
    assert _errors(_defaults()) == []


@pytest.mark.parametrize("name", ["elasticsearch", "loki", "splunk", "everything"])
def test_example_values_are_accepted(name: str) -> None:
    user = yaml.safe_load((FIXTURES / f"values-{name}.yaml").read_text())
    assert _errors(coalesce(user, _defaults())) == []


WRONG: list[tuple[str, dict[str, Any], str]] = [
    ("misspelt top-level key", {"colector": {"enabled": True}}, "'colector' was unexpected"),
    ("schema not offered", {"agent": {"schema": "json"}}, "agent.schema: 'json' is not one of"),
    ("privileged as a string", {"agent": {"securityContext": {"privileged": "yes"}}}, "privileged: 'yes'"),
    ("unknown backend", {"collector": {"backend": "kafka"}}, "collector.backend: 'kafka' is not one of"),
    ("collector mode", {"collector": {"mode": "statefulset"}}, "collector.mode"),
    ("port out of range", {"agent": {"healthPort": 70000}}, "agent.healthPort: 70000 is greater"),
    ("digest not a digest", {"image": {"digest": "latest"}}, "image.digest: 'latest' does not match"),
    ("rule file name", {"rules": {"rule.txt": "title: x"}}, "'rule.txt' does not match"),
    ("OTLP protocol", {"otlp": {"protocol": "http"}}, "otlp.protocol: 'http' is not one of"),
    ("endpoint without scheme", {"otlp": {"endpoint": "collector:4317"}}, "otlp.endpoint"),
    ("cpu quantity", {"agent": {"resources": {"limits": {"cpu": "lots"}}}}, "agent.resources.limits.cpu"),
    (
        "elasticsearch URL",
        {"collector": {"elasticsearch": {"endpoint": "elastic:9200"}}},
        "collector.elasticsearch.endpoint",
    ),
    (
        "splunk without its token Secret",
        {"collector": {"enabled": True, "backend": "splunk"}},
        "collector.splunk.token.existingSecret: ''",
    ),
    (
        "provex config: misspelt key",
        {"agent": {"config": {"probes": {"ring_bufer_pages": 512}}}},
        "agent.config.probes: Additional properties are not allowed ('ring_bufer_pages' was unexpected)",
    ),
    (
        "provex config: wrong type",
        {"agent": {"config": {"correlate": {"window_s": "ten minutes"}}}},
        "agent.config.correlate.window_s: 'ten minutes' is not of type 'number'",
    ),
    (
        "provex config: unknown section",
        {"agent": {"config": {"emit": {}}}},
        "agent.config: Additional properties are not allowed ('emit' was unexpected)",
    ),
    ("insecure as a string", {"otlp": {"insecure": "yes"}}, "otlp.insecure: 'yes' is not one of"),
    ("collector tag removed", {"collector": {"image": {"tag": None}}}, "'tag' is a required property"),
]


@pytest.mark.parametrize(("case", "user", "expected"), WRONG, ids=[c for c, _, _ in WRONG])
def test_wrong_values_are_refused(case: str, user: dict[str, Any], expected: str) -> None:
    errors = _errors(coalesce(user, _defaults()))
    assert errors, f"{case}: accepted"
    assert any(expected in e for e in errors), f"{case}: {errors}"
