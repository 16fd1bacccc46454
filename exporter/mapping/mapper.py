"""Mappers by schema name: ECS and OCSF documents from events and alerts."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from exporter import __version__
from exporter.config.schema import node_name as resolve_node_name
from exporter.mapping.compiled import compile_mapping
from exporter.mapping.engine import Document, Mapping, MappingError
from exporter.model import Alert, Event
from exporter.resources import data_dir


def schema_names() -> list[str]:
    """The schemas that ship with provex (one mappings/<name>.yaml each)."""
    return sorted(p.stem for p in data_dir("mappings").glob("*.yaml"))


def load_mapping(name_or_path: str | Path) -> Mapping:
    """A shipped mapping by schema name ("ecs", "ocsf") or a mapping file by path."""
    if isinstance(name_or_path, Path) or "/" in str(name_or_path) or str(name_or_path).endswith(".yaml"):
        return Mapping(Path(name_or_path))
    path = data_dir("mappings") / f"{name_or_path}.yaml"
    if not path.is_file():
        raise MappingError(
            f"unknown schema {name_or_path!r}: expected one of {schema_names()} (from {path.parent})"
        )
    return Mapping(path)


# The node of a replayed record that carries none, when none was given (--node-name).
UNKNOWN_NODE = "unknown"


class Mapper:
    """Turns events and alerts into documents of one schema.

    `node_name`, `cluster_name` and `hostname` describe the node the agent
    runs on (ECS host.*/orchestrator.cluster.*, OCSF device.*). `recorded`: the
    records are a replay, made on another node: each document names the node its
    record carries (its Pod's), else `node_name` as given, else UNKNOWN_NODE (OCSF's
    device needs a name), and no host name (the replaying machine's would be wrong).
    """

    def __init__(
        self,
        schema: str | Path,
        node_name: str = "",
        cluster_name: str = "",
        hostname: str = "",
        version: str = __version__,
        recorded: bool = False,
    ) -> None:
        self.mapping = load_mapping(schema)
        self.compiled = compile_mapping(self.mapping)
        self.schema = self.mapping.schema
        self.recorded = recorded
        self.agent: dict[str, Any] = {
            "node_name": node_name if recorded else resolve_node_name(node_name, hostname),
            "cluster_name": cluster_name,
            "hostname": "" if recorded else hostname or socket.gethostname(),
            "version": version,
        }

    def map(self, record: Event | Alert) -> Document | None:
        """The document for `record`, or None if the mapping has no kind for it (the
        compiled mapping: no provenance)."""
        return self.compiled.map(record, self._agent_of(record))

    def explain(self, record: Event | Alert) -> Document | None:
        """The same document from the reference engine, with the item that set each
        field (`Document.set_by`)."""
        return self.mapping.apply(self.mapping.context(record, self._agent_of(record)))

    def _agent_of(self, record: Event | Alert) -> dict[str, Any]:
        if self.recorded:
            return {
                **self.agent,
                "node_name": recorded_node(record) or self.agent["node_name"] or UNKNOWN_NODE,
            }
        return self.agent


def recorded_node(record: Event | Alert) -> str:
    """The node a record was made on, as it carries it (its Pod's node), or ""."""
    event = record.event if isinstance(record, Alert) else record
    container = event.container if event is not None else None
    pod = container.pod if container is not None else None
    return pod.node if pod is not None else ""
