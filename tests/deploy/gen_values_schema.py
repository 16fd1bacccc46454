"""Generate helm/provex/values.schema.json.

The chart's own keys are described here; `agent.config` takes provex's config
schema straight from exporter/config/schema.py (msgspec), so a misspelt
provex key is refused by `helm install` just as `provex run` would refuse it.
tests/deploy/test_values_schema.py fails when the checked-in file is stale:

    PYTHONPATH=. python tests/deploy/gen_values_schema.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from exporter.config.schema import Config

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "helm" / "provex" / "values.schema.json"
_PROVEX = "provex."  # prefix of the definitions taken from msgspec


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        out["required"] = required
    return out


_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_NAME = {"type": "string", "pattern": r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_SECRET_NAME = {"type": "string", "pattern": r"^$|^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}
_QUANTITY = {"type": ["string", "integer", "number"], "pattern": r"^[0-9.]+(m|[KMGTPE]i?)?$"}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"}
_ANY_OBJ = {"type": "object"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_LIST_OBJ = {"type": "array", "items": {"type": "object"}}
_ABS_PATH = {"type": "string", "pattern": "^/"}
_INDEX = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]*$"}
_URL = {"type": "string", "pattern": "^https?://[^\\s]+$"}


def _resources() -> dict[str, Any]:
    amounts = _obj({"cpu": _QUANTITY, "memory": _QUANTITY, "ephemeral-storage": _QUANTITY})
    return _obj({"requests": amounts, "limits": amounts})


def _image(tag_required: bool = False) -> dict[str, Any]:
    return _obj(
        {
            "repository": {"type": "string", "minLength": 1},
            "tag": {"type": "string", "minLength": 1} if tag_required else _STR,
            "digest": {"type": "string", "pattern": "^$|^sha256:[a-f0-9]{64}$"},
            "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
        },
        ["repository", "tag", "digest", "pullPolicy"],
    )


def _user_pass_secret() -> dict[str, Any]:
    return _obj(
        {
            "existingSecret": _SECRET_NAME,
            "usernameKey": {"type": "string", "minLength": 1},
            "passwordKey": {"type": "string", "minLength": 1},
        },
        ["existingSecret", "usernameKey", "passwordKey"],
    )


def provex_definitions() -> dict[str, Any]:
    """provex's config schema (msgspec), with $refs rewritten into `definitions`."""
    schema = msgspec.json.schema(Config)
    text = json.dumps(schema["$defs"]).replace('"#/$defs/', f'"#/definitions/{_PROVEX}')
    return {f"{_PROVEX}{name}": value for name, value in json.loads(text).items()}


def build() -> dict[str, Any]:
    agent = _obj(
        {
            "schema": {"enum": ["", "raw", "ecs", "ocsf"]},
            "logLevel": {"enum": ["debug", "info", "warning", "error"]},
            "monitor": {"enum": ["containers", "all"]},
            "healthPort": _PORT,
            "config": {"$ref": f"#/definitions/{_PROVEX}Config"},
            "extraArgs": {"type": "array", "items": _STR},
            "extraEnv": _LIST_OBJ,
            "resources": _resources(),
            "securityContext": _obj(
                {
                    "privileged": _BOOL,
                    "sysAdmin": _BOOL,
                    "nonRoot": _BOOL,
                    "seccompProfile": _obj(
                        {
                            "type": {"enum": ["RuntimeDefault", "Unconfined", "Localhost"]},
                            "localhostProfile": _STR,
                        },
                        ["type"],
                    ),
                },
                ["privileged", "sysAdmin", "nonRoot", "seccompProfile"],
            ),
            "host": _obj(
                {
                    "tracefs": _ABS_PATH,
                    "debugfs": _BOOL,
                    "cgroup": _ABS_PATH,
                    "modules": _ABS_PATH,
                    "usrSrc": _ABS_PATH,
                },
                ["tracefs", "debugfs", "cgroup", "modules", "usrSrc"],
            ),
            "priorityClassName": _STR,
            "terminationGracePeriodSeconds": {"type": "integer", "minimum": 0},
            "updateStrategy": _ANY_OBJ,
            "nodeSelector": _STR_MAP,
            "tolerations": _LIST_OBJ,
            "affinity": _ANY_OBJ,
            "podAnnotations": _STR_MAP,
            "podLabels": _STR_MAP,
        },
        ["schema", "logLevel", "monitor", "healthPort", "config", "resources", "securityContext", "host"],
    )
    collector = _obj(
        {
            "enabled": _BOOL,
            "mode": {"enum": ["deployment", "daemonset"]},
            "replicas": {"type": "integer", "minimum": 1},
            "backend": {"enum": ["elasticsearch", "loki", "splunk"]},
            "image": _image(tag_required=True),
            "resources": _resources(),
            "memoryLimiter": _obj(
                {
                    "checkInterval": _DURATION,
                    "limitPercentage": {"type": "integer", "minimum": 1, "maximum": 100},
                    "spikeLimitPercentage": {"type": "integer", "minimum": 0, "maximum": 100},
                },
                ["checkInterval", "limitPercentage", "spikeLimitPercentage"],
            ),
            "batch": _obj(
                {"timeout": _DURATION, "sendBatchSize": {"type": "integer", "minimum": 1}},
                ["timeout", "sendBatchSize"],
            ),
            "elasticsearch": _obj(
                {
                    "endpoint": _URL,
                    "alertsIndex": _INDEX,
                    "eventsIndex": _INDEX,
                    "auth": _user_pass_secret(),
                    "insecureSkipVerify": _BOOL,
                },
                ["endpoint", "alertsIndex", "eventsIndex", "auth", "insecureSkipVerify"],
            ),
            "loki": _obj(
                {"endpoint": _URL, "tenant": _STR, "auth": _user_pass_secret()},
                ["endpoint", "tenant", "auth"],
            ),
            "splunk": _obj(
                {
                    "endpoint": _URL,
                    "index": {"type": "string", "minLength": 1},
                    "source": _STR,
                    "alertsSourcetype": {"type": "string", "minLength": 1},
                    "eventsSourcetype": {"type": "string", "minLength": 1},
                    "token": _obj(
                        {"existingSecret": _SECRET_NAME, "key": {"type": "string", "minLength": 1}},
                        ["existingSecret", "key"],
                    ),
                    "insecureSkipVerify": _BOOL,
                },
                ["endpoint", "index", "token", "insecureSkipVerify"],
            ),
            "nodeSelector": _STR_MAP,
            "tolerations": _LIST_OBJ,
            "affinity": _ANY_OBJ,
        },
        ["enabled", "mode", "backend", "image", "memoryLimiter", "batch"],
    )
    # A Splunk collector cannot start without its HEC token Secret.
    collector["allOf"] = [
        {
            "if": {
                "properties": {"enabled": {"const": True}, "backend": {"const": "splunk"}},
                "required": ["enabled", "backend"],
            },
            "then": {
                "properties": {
                    "splunk": {"properties": {"token": {"properties": {"existingSecret": {"minLength": 1}}}}}
                }
            },
        }
    ]
    root = _obj(
        {
            "nameOverride": _STR,
            "fullnameOverride": _NAME,
            "image": _image(),
            "imagePullSecrets": {"type": "array", "items": _obj({"name": _SECRET_NAME}, ["name"])},
            "agent": agent,
            "rules": {
                "type": "object",
                "propertyNames": {"pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.ya?ml$"},
                "additionalProperties": {"type": "string", "minLength": 1},
            },
            "otlp": _obj(
                {
                    "endpoint": {"type": "string", "pattern": "^$|^https?://[^\\s]+$"},
                    "protocol": {"enum": ["grpc", "http/protobuf"]},
                    "insecure": {"enum": [True, False, ""]},
                    "headers": _STR_MAP,
                },
                ["endpoint", "protocol", "insecure"],
            ),
            "serviceAccount": _obj({"create": _BOOL, "name": _NAME, "annotations": _STR_MAP}, ["create"]),
            "rbac": _obj({"create": _BOOL}, ["create"]),
            "metrics": _obj(
                {
                    "podAnnotations": _BOOL,
                    "tls": _obj({"existingSecret": _SECRET_NAME}, ["existingSecret"]),
                    "authorization": _obj(
                        {"existingSecret": _SECRET_NAME, "key": {"type": "string", "minLength": 1}},
                        ["existingSecret", "key"],
                    ),
                    "serviceMonitor": _obj(
                        {
                            "enabled": _BOOL,
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "labels": _STR_MAP,
                            "tlsConfig": _ANY_OBJ,
                        },
                        ["enabled"],
                    ),
                    "networkPolicy": _obj({"enabled": _BOOL, "from": _LIST_OBJ}, ["enabled"]),
                },
                ["podAnnotations", "tls", "authorization", "serviceMonitor", "networkPolicy"],
            ),
            "collector": collector,
            # Helm passes this to every chart; allow it so `--set global.x` still installs.
            "global": _ANY_OBJ,
        },
        ["image", "agent", "otlp", "collector"],
    )
    root = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "provex chart values", **root}
    root["definitions"] = provex_definitions()
    return root


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render())
    print(f"wrote {SCHEMA_PATH}")
