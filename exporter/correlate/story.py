"""An alert's story: the incident's subgraph, read off the provenance graph's state when the
alert is raised (Alert.story), and exported for investigation tools as node-link JSON or
GraphML through networkx, which only this export (and ProvenanceGraph.story) imports.

The story of some evidence is: the processes it names and their ancestors (`depth`
generations, nearest first), each with its image, container and exit, the container that
holds it, and what it did within the window (history steps: executed, wrote, read a secret,
connected, accepted, mounted, entered or created a namespace, changed root, linked,
renamed); then the evidence events themselves. Nodes and edges come in the order they were
first named, so a replay gives the same story byte for byte; a name seen again updates its
node or edge in place (networkx's add_node and add_edge with a key do the same).

`build_story` reads any graph with `procs` (pid -> state with ppid, exe, cid, exited_ns and
history steps of ts, kind, target, event_id), `now_ns`, `window_ns` and `ancestors`: the
reference's ProvenanceGraph and the native core's Graph alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from exporter.model import EvidenceRef, Story, StoryEdge, StoryNode

_NodeKey = tuple[str, str]


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[_NodeKey, dict[str, Any]] = {}
        self.edges: dict[tuple[_NodeKey, _NodeKey, str], dict[str, Any]] = {}

    def node(self, kind: str, name: str, **attrs: Any) -> _NodeKey:
        key = (kind, name)
        self.nodes.setdefault(key, {}).update(attrs)
        return key

    def edge(self, source: _NodeKey, target: _NodeKey, key: str, **data: Any) -> None:
        self.nodes.setdefault(source, {})
        self.nodes.setdefault(target, {})
        self.edges.setdefault((source, target, key), {}).update(data)

    def story(self) -> Story:
        index = {key: i for i, key in enumerate(self.nodes)}
        return Story(
            nodes=[StoryNode(kind=k, name=n, **attrs) for (k, n), attrs in self.nodes.items()],
            edges=[
                StoryEdge(source=index[s], target=index[t], key=key, **data)
                for (s, t, key), data in self.edges.items()
            ],
        )


def build_story(graph: Any, evidence: Iterable[EvidenceRef], depth: int = 4) -> Story:
    """The story of `evidence` as `graph` knows it now (see the module's docstring)."""
    b = _Builder()
    horizon = graph.now_ns - graph.window_ns
    evidence = list(evidence)
    pids: list[int] = []
    for ref in evidence:
        for pid in graph.ancestors(ref.pid, depth):
            if pid not in pids:
                pids.append(pid)
    for pid in pids:
        state = graph.procs.get(pid)
        if state is None:
            b.node("proc", str(pid))
            continue
        node = b.node("proc", str(pid), exe=state.exe, container=state.cid, exited_ns=state.exited_ns)
        if state.ppid in pids:
            b.edge(("proc", str(state.ppid)), node, f"fork:{pid}", kind="forked", ts_ns=0)
        if state.cid:
            b.edge(b.node("container", state.cid), node, f"in:{pid}", kind="contains", ts_ns=0)
        for step in state.history or ():
            if step.ts < horizon:
                continue
            what, _, name = step.target.partition(":")
            b.edge(node, b.node(what, name), step.event_id, kind=step.kind, ts_ns=step.ts)
    for ref in evidence:
        target = _ref_target(ref)
        if target is None:
            continue
        b.node(*target)
        source = ("proc", str(ref.pid))
        if (source, target, ref.id) not in b.edges:
            b.edge(source, target, ref.id, kind=ref.step or ref.type.value, ts_ns=ref.ts_ns)
    return b.story()


def _ref_target(ref: EvidenceRef) -> tuple[str, str] | None:
    if ref.destination:
        return ("endpoint", ref.destination)
    if ref.peer:
        return ("endpoint", ref.peer)
    if ref.path:
        return ("file", ref.path)
    if ref.source or ref.fstype:
        return ("mount", f"{ref.source}:{ref.fstype}")
    return None


# ---------------------------------------------------------------- networkx


def story_graph(story: Story, *, string_ids: bool = False) -> Any:
    """The story as a networkx MultiDiGraph: nodes ("proc", pid) and (kind, name), each
    process with its pid, exe, container (and exited_ns); edges keyed by event id with their
    kind and time (ts). `string_ids`: node ids "proc:12", "file:/tmp/x" and only str, int and
    bool attributes (what GraphML can hold)."""
    import networkx as nx

    g = nx.MultiDiGraph()
    ids = []
    for node in story.nodes:
        if string_ids:
            node_id: Any = f"{node.kind}:{node.name}"
            attrs: dict[str, Any] = {"kind": node.kind, "name": node.name}
        else:
            node_id = ("proc", int(node.name)) if node.kind == "proc" else (node.kind, node.name)
            attrs = {}
        if node.kind == "proc":
            attrs["pid"] = int(node.name)
            if node.exe or node.container:
                attrs.update(exe=node.exe, container=node.container)
            if node.exited_ns:
                attrs["exited_ns"] = node.exited_ns
        g.add_node(node_id, **attrs)
        ids.append(node_id)
    for edge in story.edges:
        g.add_edge(ids[edge.source], ids[edge.target], key=edge.key, kind=edge.kind, ts=edge.ts_ns)
    return g


def node_link_json(story: Story) -> bytes:
    """The story as networkx's node-link JSON (networkx.readwrite.json_graph)."""
    from networkx.readwrite import json_graph

    g = story_graph(story, string_ids=True)
    try:
        data = json_graph.node_link_data(g, edges="links")  # networkx >= 3.4
    except TypeError:
        data = json_graph.node_link_data(g)  # 3.2, 3.3: "links" is the default and only name
    return msgspec.json.format(msgspec.json.encode(data), indent=2)


def graphml(story: Story) -> str:
    """The story as GraphML (networkx.readwrite.graphml)."""
    from networkx.readwrite.graphml import generate_graphml

    return "\n".join(generate_graphml(story_graph(story, string_ids=True))) + "\n"
