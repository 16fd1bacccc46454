"""Check rendered Kubernetes objects against the official Python client's models.

`kubernetes.client` deserialisation ignores keys it does not know; this walks
each object against the model classes (their `openapi_types` and
`attribute_map`, generated from the Kubernetes OpenAPI spec) and refuses an
unknown key, a wrong scalar type or a missing required field, naming the path.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes.client.models as models
import yaml
from kubernetes.client import Configuration


class ManifestError(AssertionError):
    """A rendered object the Kubernetes API would refuse or silently misread."""


_CONFIG = Configuration()
_CONFIG.client_side_validation = True  # required fields and enums are checked


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; the API server's decoder refuses them."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ManifestError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_documents(text: str, where: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of one rendered template."""
    docs = []
    try:
        for doc in yaml.load_all(text, Loader=_UniqueKeyLoader):  # a SafeLoader subclass
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ManifestError(f"{where}: a document is a {type(doc).__name__}, not an object")
            docs.append(doc)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{where}: not valid YAML: {exc}") from None
    except ManifestError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    return docs


# Both spellings of the generated type names: list[X] / List[X], dict(str, X) / Dict[str, X].
_LIST_RE = re.compile(r"^[lL]ist\[(.+)\]$")
_DICT_RE = re.compile(r"^(?:dict\(([^,]+), (.+)\)|Dict\[([^,]+), (.+)\])$")


def _check_scalar(value: Any, type_name: str, path: str) -> Any:
    expected: dict[str, tuple[type, ...]] = {
        "str": (str,),
        "int": (int,),
        "float": (int, float),
        "bool": (bool,),
        "datetime": (str,),
        "date": (str,),
        "bytes": (str,),  # base64 in YAML
    }
    kinds = expected.get(type_name)
    if kinds is None:
        raise ManifestError(f"{path}: unknown model type {type_name}")
    if isinstance(value, bool) and bool not in kinds:
        raise ManifestError(f"{path}: expected {type_name}, got a boolean {value!r}")
    if not isinstance(value, kinds):
        raise ManifestError(f"{path}: expected {type_name}, got {type(value).__name__} {value!r}")
    return value


def build(value: Any, type_name: str, path: str) -> Any:
    """Turn JSON-shaped data into the model `type_name`, refusing what it does not declare."""
    if value is None:
        return None
    if type_name == "object":  # IntOrString, RawExtension: any JSON
        return value
    if match := _LIST_RE.match(type_name):
        if not isinstance(value, list):
            raise ManifestError(f"{path}: expected a list, got {type(value).__name__}")
        return [build(item, match.group(1), f"{path}[{i}]") for i, item in enumerate(value)]
    if match := _DICT_RE.match(type_name):
        if not isinstance(value, dict):
            raise ManifestError(f"{path}: expected a mapping, got {type(value).__name__}")
        item_type = match.group(2) or match.group(4)
        return {k: build(v, item_type, f"{path}.{k}") for k, v in value.items()}
    klass = getattr(models, type_name, None)
    if klass is None:
        return _check_scalar(value, type_name, path)
    if not isinstance(value, dict):
        raise ManifestError(f"{path}: expected a {type_name} object, got {type(value).__name__}")
    by_json = {json_key: attr for attr, json_key in klass.attribute_map.items()}
    kwargs = {}
    for key, item in value.items():
        attr = by_json.get(key)
        if attr is None:
            known = ", ".join(sorted(by_json))
            raise ManifestError(f"{path}: unknown key {key!r} for {type_name} (known: {known})")
        kwargs[attr] = build(item, klass.openapi_types[attr], f"{path}.{key}")
    try:
        if hasattr(klass, "model_validate"):  # kubernetes >= 35: pydantic models, strict types
            return klass(**kwargs)
        return klass(local_vars_configuration=_CONFIG, **kwargs)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        message = " ".join(str(exc).split())
        raise ManifestError(f"{path}: {type_name}: {message}") from None


def model_name(api_version: str, kind: str) -> str:
    """apps/v1 DaemonSet -> V1DaemonSet, rbac.authorization.k8s.io/v1 Role -> V1Role."""
    version = api_version.rsplit("/", 1)[-1]
    return f"{version[0].upper()}{version[1:]}{kind}"


def validate(obj: dict[str, Any], where: str) -> Any:
    """The model instance for one rendered object; raises ManifestError."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise ManifestError(f"{where}: apiVersion and kind are required")
    name = model_name(api_version, kind)
    if getattr(models, name, None) is None:
        raise ManifestError(f"{where}: {api_version} {kind} is not a built-in Kubernetes kind")
    return build(obj, name, f"{where}:{kind}")
