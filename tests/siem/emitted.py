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
def golden_fields(schema: str) -> frozenset[str]:
    """Every dotted leaf field of the golden documents of `schema`."""
    fields: set[str] = set()
    for path in (GOLDEN / schema).glob("*.json"):
        fields |= set(flatten(json.loads(path.read_text())))
    return frozenset(fields)


def emitted(schema: str, field: str) -> bool:
    """A field the agent emits: set by the mapping, or a leaf of a golden document
    (the mapping may set a parent object, e.g. OCSF finding_info.attacks)."""
    return field in mapped_fields(schema) or field in golden_fields(schema)
