"""Validators for emitted documents against the real upstream schemas.

The schemas are copies of the upstream releases in tests/fixtures/reference/
(see its README for versions and licences); the ATT&CK data is the package's
own (exporter/taxonomy/data/). Rules applied here: ECS field existence, type,
allowed values and expected event types; OCSF JSON Schema per class plus
type_uid/metadata.version; ATT&CK ids. provex's own custom fields
(mappings/fields/*.yml, in ECS's schema format) are validated the same way: an
ECS document may hold exactly ECS's fields and those; OCSF's free-form
`unmapped.provex.*` must match them where it uses their names.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]


REFERENCE = REPO / "tests" / "fixtures" / "reference"
ATTACK_DATA = REPO / "exporter" / "taxonomy" / "data"


def schemas_dir() -> Path:
    return REFERENCE


# ---- ECS -------------------------------------------------------------------


@functools.cache
def ecs_fields() -> dict[str, dict[str, Any]]:
    with open(schemas_dir() / "ecs" / "ecs_flat-9.4.0.yml", encoding="utf-8") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


CUSTOM_FIELDS = REPO / "mappings" / "fields"


@functools.cache
def custom_fields() -> dict[str, dict[str, Any]]:
    """provex's ECS custom fields (mappings/fields/*.yml, ECS's schema format), flat
    like ecs_flat.yml: dotted name -> its definition (type, normalize, allowed_values)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(CUSTOM_FIELDS.glob("*.yml")):
        with open(path, encoding="utf-8") as fh:
            for fieldset in yaml.safe_load(fh):
                for spec in fieldset["fields"]:
                    name = f"{fieldset['name']}.{spec['name']}"
                    out[name] = {**spec, "flat_name": name, "normalize": spec.get("normalize") or []}
    return out


@functools.cache
def ecs_and_custom_fields() -> dict[str, dict[str, Any]]:
    """What an ECS document of provex may hold: ECS 9.4.0 and exactly provex's custom fields."""
    ecs = ecs_fields()
    clash = sorted(set(custom_fields()) & set(ecs))
    if clash:
        raise AssertionError(f"custom fields redefine ECS fields: {clash}")
    return {**ecs, **custom_fields()}


_STRING_TYPES = {"keyword", "wildcard", "constant_keyword", "match_only_text", "text"}
_INT_TYPES = {"long", "integer", "short", "byte", "unsigned_long"}
_FLOAT_TYPES = {"float", "half_float", "scaled_float", "double"}
_OBJECT_TYPES = {"object", "flattened", "nested"}


def _ecs_type_ok(kind: str, value: Any) -> bool:
    if kind in _STRING_TYPES:
        return isinstance(value, str)
    if kind in _INT_TYPES:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in _FLOAT_TYPES:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "ip":
        try:
            ipaddress.ip_address(value)
        except (TypeError, ValueError):
            return False
        return True
    if kind == "date":
        try:
            dt.datetime.fromisoformat(value)
        except (TypeError, ValueError):
            return False
        return True
    if kind in _OBJECT_TYPES:
        return isinstance(value, dict)
    raise AssertionError(f"validator does not know ECS type {kind!r}")


def _flatten(doc: dict[str, Any], fields: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = prefix + key
        defined = fields.get(name)
        if isinstance(value, dict) and (defined is None or defined["type"] not in _OBJECT_TYPES):
            out.update(_flatten(value, fields, name + "."))
        else:
            out[name] = value
    return out


def _nested_errors(name: str, value: Any, fields: dict[str, dict[str, Any]]) -> list[str]:
    """Each object of an object or nested field whose sub-fields are defined, field by field."""
    prefix = name + "."
    if not any(f.startswith(prefix) for f in fields):
        return []  # a free-form object (labels, ...)
    errors = []
    for i, entry in enumerate(value if isinstance(value, list) else [value]):
        if isinstance(entry, dict):  # anything else is reported as a type error
            for key, leaf in _flatten(entry, fields, prefix).items():
                errors += [f"[{i}] {e}" for e in _field_errors(key, leaf, fields)]
    return errors


def _field_errors(name: str, value: Any, fields: dict[str, dict[str, Any]]) -> list[str]:
    spec = fields.get(name)
    if spec is None:
        return [f"{name}: not an ECS field (nor a provex custom field, mappings/fields/)"]
    errors = []
    is_array = "array" in (spec.get("normalize") or [])
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not is_array and spec["type"] not in _OBJECT_TYPES:
        errors.append(f"{name}: ECS does not expect an array here")
    if is_array and not isinstance(value, list):
        errors.append(f"{name}: ECS expects an array")
    for v in values:
        if not _ecs_type_ok(spec["type"], v):
            errors.append(f"{name}: {v!r} is not of ECS type {spec['type']}")
    if spec["type"] in _OBJECT_TYPES:
        errors += _nested_errors(name, value, fields)
    if spec["type"] in _OBJECT_TYPES and name == "labels":
        for lk, lv in value.items():
            items = lv if isinstance(lv, list) else [lv]
            if not all(isinstance(i, str) for i in items):
                errors.append(f"labels.{lk}: labels hold keyword values only")
    allowed = spec.get("allowed_values")
    if allowed:
        names = {a["name"]: a for a in allowed}
        for v in values:
            if v not in names:
                errors.append(f"{name}: {v!r} not among allowed values")
    return errors


def ecs_errors(doc: dict[str, Any]) -> list[str]:
    """Every way `doc` breaks ECS 9.4.0 plus provex's custom fields (empty list = valid)."""
    fields = ecs_and_custom_fields()
    errors = []
    flat = _flatten(doc, fields)
    for name in ("@timestamp", "ecs.version"):
        if name not in flat:
            errors.append(f"{name}: required field missing")
    for name, value in flat.items():
        errors += _field_errors(name, value, fields)
    categories = flat.get("event.category", [])
    for event_type in flat.get("event.type", []):
        expected = set()
        for cat in categories:
            for allowed in fields["event.category"]["allowed_values"]:
                if allowed["name"] == cat:
                    expected |= set(allowed.get("expected_event_types") or [])
        if categories and event_type not in expected:
            errors.append(f"event.type: {event_type!r} not expected for categories {categories}")
    return errors


# ---- OCSF ------------------------------------------------------------------

OCSF_CLASS_FILES = {
    1001: "file_activity",
    1003: "kernel_activity",
    1007: "process_activity",
    4001: "network_activity",
    2004: "detection_finding",
}


@functools.cache
def _ocsf_validator(class_file: str) -> jsonschema.Draft202012Validator:
    with open(schemas_dir() / "ocsf" / "jsonschema" / f"{class_file}.json", encoding="utf-8") as fh:
        schema = json.load(fh)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@functools.cache
def ocsf_compiled() -> dict[str, Any]:
    with open(schemas_dir() / "ocsf" / "ocsf-schema-1.8.0.json", encoding="utf-8") as fh:
        return json.load(fh)


def ocsf_errors(doc: dict[str, Any]) -> list[str]:
    """Every way `doc` breaks OCSF 1.8.0 (empty list = valid)."""
    class_file = OCSF_CLASS_FILES.get(doc.get("class_uid"))  # type: ignore[arg-type]
    if class_file is None:
        return [f"class_uid {doc.get('class_uid')!r} is not one provex emits"]
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in _ocsf_validator(class_file).iter_errors(doc)
    ]
    if doc.get("type_uid") != doc["class_uid"] * 100 + doc.get("activity_id", -1):
        errors.append("type_uid != class_uid*100 + activity_id")
    if doc.get("metadata", {}).get("version") != "1.8.0":
        errors.append("metadata.version must be 1.8.0")
    # Names must be the captions of their ids.
    cls = ocsf_compiled()["classes"][class_file]
    attrs = cls["attributes"]
    named = (("activity_id", "activity_name"), ("severity_id", "severity"), ("status_id", "status"))
    for id_key, name_key in named:
        if id_key in doc and name_key in doc:
            caption = attrs[id_key]["enum"][str(doc[id_key])]["caption"]
            if doc[name_key] != caption:
                errors.append(f"{name_key} {doc[name_key]!r} is not the caption {caption!r} of {id_key}")
    if doc.get("class_name") not in (None, cls["caption"]):
        errors.append(f"class_name {doc['class_name']!r} != {cls['caption']!r}")
    # unmapped.provex.* carries the ECS custom fields of the same name: same types.
    provex = (doc.get("unmapped") or {}).get("provex")
    if isinstance(provex, dict):
        fields = custom_fields()
        for key, leaf in _flatten(provex, fields, "provex.").items():
            if key in fields:
                errors += [f"unmapped.{e}" for e in _field_errors(key, leaf, fields)]
    return errors


# ---- ATT&CK ----------------------------------------------------------------


@functools.cache
def attack() -> dict[str, Any]:
    with open(ATTACK_DATA / "containers-techniques.json", encoding="utf-8") as fh:
        return json.load(fh)


def attack_errors(technique_ids: list[str], tactic_ids: list[str]) -> list[str]:
    """Technique ids must exist (a parent counts when a sub-technique of it is
    listed); each reported tactic must belong to a reported technique."""
    data = attack()
    by_id = {t["id"]: t for t in data["techniques"]}
    parents = {t.get("parent_id"): t for t in data["techniques"] if t.get("parent_id")}
    short_by_ta = {v["id"]: short for short, v in data["tactics"].items()}
    errors = []
    technique_tactics: set[str] = set()
    for tid in technique_ids:
        entry = by_id.get(tid) or parents.get(tid)
        if entry is None:
            errors.append(f"technique {tid} is not in the ATT&CK subset")
            continue
        technique_tactics |= set(entry["tactics"])
    for ta in tactic_ids:
        short = short_by_ta.get(ta)
        if short is None:
            errors.append(f"tactic {ta} is not an ATT&CK tactic id")
        elif short not in technique_tactics:
            errors.append(f"tactic {ta} ({short}) belongs to none of {technique_ids}")
    return errors


def document_errors(schema: str, doc: dict[str, Any]) -> list[str]:
    """All schema and ATT&CK errors of one emitted document."""
    if schema == "ecs":
        errors = ecs_errors(doc)
        threat = doc.get("threat", {})
        techniques = threat.get("technique", {})
        ids = techniques.get("id", []) + techniques.get("subtechnique", {}).get("id", [])
        if ids:
            errors += attack_errors(ids, threat.get("tactic", {}).get("id", []))
        return errors
    errors = ocsf_errors(doc)
    for where in (doc.get("attacks") or [], (doc.get("finding_info") or {}).get("attacks") or []):
        for entry in where:
            ids = [entry["technique"]["uid"]]
            if "sub_technique" in entry:
                ids.append(entry["sub_technique"]["uid"])
            tactics = [t["uid"] for t in entry.get("tactics", [])]
            if "tactic" in entry:
                tactics.append(entry["tactic"]["uid"])
            errors += attack_errors(ids, tactics)
    return errors
