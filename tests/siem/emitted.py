"""What the agent really emits: document fields from the mapping files and the golden documents."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "fixtures" / "mapping" / "golden"


@functools.cache
def mapped_fields(schema: str) -> frozenset[str]:
    """Every dotted field a mapping item of mappings/<schema>.yaml can set."""
    doc = yaml.safe_load((REPO / "mappings" / f"{schema}.yaml").read_text())
    return frozenset(key for item in doc["items"] for key in item.get("set", {}))


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


@functools.cache
def golden_values(schema: str) -> dict[str, list[Any]]:
    """Every dotted leaf field of the golden documents of `schema`, with its values."""
    values: dict[str, list[Any]] = {}
    for path in sorted((GOLDEN / schema).glob("*.json")):
        for key, value in flatten(json.loads(path.read_text())).items():
            values.setdefault(key, []).append(value)
    return values
