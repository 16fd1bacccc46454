"""Named value transforms a mapping file may call (`fn: NAME`).

Mapping files name these; the engine refuses an unknown name at load time.
Each takes the value found at the item's `from` path and the mapping's
`tables`, and returns the value to set (None = set nothing).
"""

from __future__ import annotations

import datetime as _dt
import errno as _errno
import ipaddress as _ip
import posixpath
from collections.abc import Callable
from typing import Any

from exporter.model import linux
from exporter.model.addresses import split_host_port
from exporter.taxonomy.attack import attack

Transform = Callable[[Any, dict[str, dict[Any, Any]]], Any]
TRANSFORMS: dict[str, Transform] = {}


def transform(name: str) -> Callable[[Transform], Transform]:
    def register(fn: Transform) -> Transform:
        TRANSFORMS[name] = fn
        return fn

    return register


_last_second: tuple[int, str] = (-1, "")  # the last second written: events come in time order


@transform("iso8601")
def iso8601(ns: Any, _tables: dict) -> str | None:
    global _last_second
    if not isinstance(ns, int) or ns <= 0:
        return None
    seconds, rest = divmod(ns, 1_000_000_000)
    second, stamp = _last_second  # one tuple: a thread that swaps it meanwhile is harmless
    if second != seconds:
        stamp = _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (seconds, stamp)
    return f"{stamp}.{rest // 1000:06d}Z"


@transform("ns_to_ms")
def ns_to_ms(ns: Any, _tables: dict) -> int | None:
    return ns // 1_000_000 if isinstance(ns, int) and ns > 0 else None


@transform("join_args")
def join_args(argv: Any, _tables: dict) -> str | None:
    return " ".join(argv) if argv else None


@transform("count")
def count(items: Any, _tables: dict) -> int | None:
    return len(items) if items else None


@transform("basename")
def basename(path: Any, _tables: dict) -> str | None:
    return posixpath.basename(path.rstrip("/")) or path if path else None


@transform("dirname")
def dirname(path: Any, _tables: dict) -> str | None:
    return posixpath.dirname(path) or None if path else None


@transform("present")
def present(value: Any, _tables: dict) -> bool:
    """True when the value is there (non-empty), else False: a flag written either way."""
    return value not in (None, "", [], {})


@transform("string")
def string(value: Any, _tables: dict) -> str | None:
    return None if value is None or value == "" else str(value)


@transform("errno_name")
def errno_name(ret: Any, _tables: dict) -> str | None:
    """-2 -> 'ENOENT': the kernel's negative errno as its symbolic name."""
    if not isinstance(ret, int) or ret >= 0:
        return None
    return _errno.errorcode.get(-ret, str(ret))


@transform("namespace_names")
def namespace_names(flags: Any, _tables: dict) -> list[str] | None:
    """setns nstype / unshare flags -> ['mnt', 'pid']; setns nstype 0 = 'any'."""
    if not isinstance(flags, int):
        return None
    return linux.namespace_names(flags, setns=True)


@transform("kv_pairs")
def kv_pairs(mapping: Any, _tables: dict) -> list[str] | None:
    if not mapping:
        return None
    return [f"{key}={mapping[key]}" for key in sorted(mapping)]


def _technique_parent(technique: str) -> str:
    return technique.split(".", 1)[0]


def _technique_url(technique: str) -> str:
    return "https://attack.mitre.org/techniques/" + technique.replace(".", "/") + "/"


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


@transform("attack_techniques")
def attack_techniques(techniques: Any, _tables: dict) -> list[str] | None:
    """Technique ids without the sub-technique part, de-duplicated in order."""
    return _unique([_technique_parent(t) for t in techniques]) if techniques else None


@transform("attack_technique_urls")
def attack_technique_urls(techniques: Any, tables: dict) -> list[str] | None:
    return [_technique_url(t) for t in attack_techniques(techniques, tables) or []] or None


@transform("attack_subtechniques")
def attack_subtechniques(techniques: Any, _tables: dict) -> list[str] | None:
    return [t for t in techniques if "." in t] or None if techniques else None


@transform("attack_subtechnique_urls")
def attack_subtechnique_urls(techniques: Any, tables: dict) -> list[str] | None:
    return [_technique_url(t) for t in attack_subtechniques(techniques, tables) or []] or None


def _tactic(short: str, tables: dict) -> dict[str, str]:
    entry = tables.get("attack_tactics", {}).get(short)
    if entry is None:
        return {"name": short}
    return {
        "uid": entry["id"],
        "name": entry["name"],
        "src_url": f"https://attack.mitre.org/tactics/{entry['id']}/",
    }


def _technique_tactics(technique: str) -> frozenset[str] | None:
    """The tactics ATT&CK gives a technique (None: not in the shipped ATT&CK data)."""
    known = attack().techniques
    tactics = known.get(technique) or known.get(_technique_parent(technique))
    return frozenset(tactics) if tactics else None


def _paired_tactics(alert: Any) -> list[str]:
    """The rule's tactics that ATT&CK pairs with one of its techniques: a tactic tag no
    technique of the rule belongs to is not an ATT&CK statement about this alert (all of
    them when no technique is known)."""
    tactics = list(alert.get("tactics") or []) if alert else []
    of: set[str] = set()
    for technique in alert.get("techniques") or [] if alert else []:
        of |= _technique_tactics(technique) or set()
    return [t for t in tactics if t in of] if of else tactics


@transform("ocsf_attacks")
def ocsf_attacks(alert: Any, tables: dict) -> list[dict[str, Any]] | None:
    """One OCSF `attack` per technique, with those of the rule's tactics that the
    technique belongs to in ATT&CK (the rule's tags do not pair them)."""
    if not alert or not alert.get("techniques"):
        return None
    version = tables.get("attack_meta", {}).get("version")
    attacks = []
    for technique in alert["techniques"]:
        parent = _technique_parent(technique)
        attack_: dict[str, Any] = {"technique": {"uid": parent, "src_url": _technique_url(parent)}}
        if parent != technique:
            attack_["sub_technique"] = {"uid": technique, "src_url": _technique_url(technique)}
        belongs = _technique_tactics(technique)
        tactics = [_tactic(t, tables) for t in alert.get("tactics", []) if belongs is None or t in belongs]
        if len(tactics) == 1:
            attack_["tactic"] = tactics[0]
        if tactics:
            attack_["tactics"] = tactics
        if version:
            attack_["version"] = version
        attacks.append(attack_)
    return attacks


def _tactic_values(alert: Any, tables: dict, key: str) -> list[str] | None:
    """`key` of each tactic the alert's techniques pair with, where the tactic has one."""
    values = [_tactic(t, tables).get(key) for t in _paired_tactics(alert)]
    return [v for v in values if v] or None


@transform("attack_tactic_ids")
def attack_tactic_ids(alert: Any, tables: dict) -> list[str] | None:
    return _tactic_values(alert, tables, "uid")


@transform("attack_tactic_names")
def attack_tactic_names(alert: Any, tables: dict) -> list[str] | None:
    return [_tactic(t, tables)["name"] for t in _paired_tactics(alert)] or None


@transform("attack_tactic_urls")
def attack_tactic_urls(alert: Any, tables: dict) -> list[str] | None:
    return _tactic_values(alert, tables, "src_url")


@transform("evidence_ids")
def evidence_ids(evidence: Any, _tables: dict) -> list[str] | None:
    return [ref["id"] for ref in evidence] if evidence else None


# What an EvidenceRef may say of the event beyond its identity, in order.
_EVIDENCE_DETAILS = ("pid", "path", "host_path", "destination", "peer", "source", "fstype")


@transform("ecs_evidence")
def ecs_evidence(evidence: Any, tables: dict) -> list[dict[str, Any]] | None:
    """Each event the alert rests on, with what it touched (provex.evidence, nested)."""
    if not evidence:
        return None
    out = []
    for ref in evidence:
        entry: dict[str, Any] = {"id": ref["id"], "timestamp": iso8601(ref["ts_ns"], tables)}
        for key in ("step", "type", "syscall", *_EVIDENCE_DETAILS):
            if ref.get(key):
                entry[key] = ref[key]
        out.append(entry)
    return out


def _endpoint(destination: str) -> dict[str, Any]:
    """'ip:port' or '[ip]:port' -> an OCSF network endpoint; anything else by name."""
    try:
        host, port = split_host_port(destination)
        ip = str(_ip.ip_address(host))
    except ValueError:
        return {"name": destination}
    endpoint: dict[str, Any] = {"ip": ip}
    if port and port.isdigit():
        endpoint["port"] = int(port)
    return endpoint


@transform("ocsf_evidences")
def ocsf_evidences(evidence: Any, _tables: dict) -> list[dict[str, Any]] | None:
    """Each event the alert rests on: its id, what it was, which step it met, and what it
    touched: the file (resolved path), the process, the connect's destination endpoint; what
    OCSF's evidences object has no attribute for (host path, mount source and type) in data."""
    if not evidence:
        return None
    out = []
    for ref in evidence:
        data = {"type": ref["type"], "syscall": ref["syscall"], "time": ref["ts_ns"] // 1_000_000}
        for key in ("step", "host_path"):
            if ref.get(key):
                data[key] = ref[key]
        mount = {key: ref[key] for key in ("source", "fstype") if ref.get(key)}
        if mount:
            data["mount"] = mount
        item: dict[str, Any] = {"uid": ref["id"], "name": f"{ref['type']}:{ref['syscall']}", "data": data}
        if ref.get("path"):
            item["file"] = {
                "path": ref["path"],
                "name": basename(ref["path"], _tables),
                # an exec's file is the executed image, a regular file (as process.file);
                # elsewhere the event does not say what the path names
                "type_id": 1 if ref["type"] == "exec" else 0,
            }
        if ref.get("pid"):
            item["process"] = {"pid": ref["pid"]}
        if ref.get("destination"):
            item["dst_endpoint"] = _endpoint(ref["destination"])
        if ref.get("peer"):  # an accepted connection's peer: where it came from
            item["src_endpoint"] = _endpoint(ref["peer"])
        out.append(item)
    return out


@transform("ocsf_related_events")
def ocsf_related_events(evidence: Any, _tables: dict) -> list[dict[str, Any]] | None:
    if not evidence:
        return None
    return [{"uid": ref["id"], "type": ref["syscall"]} for ref in evidence]


@transform("ocsf_pod_resources")
def ocsf_pod_resources(event: Any, tables: dict) -> list[dict[str, Any]] | None:
    """The Pod (and its container) an alert is about, as OCSF resource_details."""
    container = (event or {}).get("container") or {}
    pod = container.get("pod") or {}
    resources = []
    if pod.get("uid"):
        resource = {"type": "kubernetes.pod", "uid": pod["uid"]}
        for key in ("name", "namespace"):
            if pod.get(key):
                resource[key] = pod[key]
        if pod.get("labels"):
            resource["labels"] = kv_pairs(pod["labels"], tables)
        resources.append(resource)
    if container.get("id"):
        resource = {"type": "container", "uid": container["id"]}
        if container.get("name"):
            resource["name"] = container["name"]
        if pod.get("namespace"):
            resource["namespace"] = pod["namespace"]
        resources.append(resource)
    return resources or None
