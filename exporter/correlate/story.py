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


def build_story(graph: Any, evidence: Iterable[EvidenceRef], depth: int = 4) -> Story:
    """The story of `evidence` as `graph` knows it now (see the module's docstring). It runs
    for every alert on the per-event path: plain dicts and tuples, Structs made once at the end."""
    horizon = graph.now_ns - graph.window_ns
    evidence = list(evidence)
    pids: dict[int, None] = {}  # in order, each once
    for ref in evidence:
        for pid in graph.ancestors(ref.pid, depth):
            pids.setdefault(pid)
    nodes: dict[_NodeKey, int] = {}  # (kind, name) -> its index, in the order first named
    procs: dict[int, StoryNode] = {}  # node index -> a known process's node
    edges: dict[tuple[int, int, str], tuple[str, int]] = {}  # (source, target, key) -> (kind, ts)

    def node(key: _NodeKey) -> int:
        index = nodes.get(key)
        if index is None:
            index = nodes[key] = len(nodes)
        return index

    procs_of = graph.procs
    for pid in pids:
        state = procs_of.get(pid)
        me = node(("proc", str(pid)))
        if state is None:
            continue
        procs[me] = StoryNode("proc", str(pid), state.exe, state.cid, state.exited_ns)
        if state.ppid in pids:
            edges[(node(("proc", str(state.ppid))), me, f"fork:{pid}")] = ("forked", 0)
        if state.cid:
            edges[(node(("container", state.cid)), me, f"in:{pid}")] = ("contains", 0)
        for step in state.history or ():
            if step.ts < horizon:
                continue
            what, _, name = step.target.partition(":")
            edges[(me, node((what, name)), step.event_id)] = (step.kind, step.ts)
    for ref in evidence:
        target = _ref_target(ref)
        if target is None:
            continue
        to = node(target)
        edge = (node(("proc", str(ref.pid))), to, ref.id)
        if edge not in edges:
            edges[edge] = (ref.step or ref.type.value, ref.ts_ns)
    return Story(
        nodes=[procs.get(i) or StoryNode(kind, name) for i, (kind, name) in enumerate(nodes)],
        edges=[StoryEdge(s, t, kind, ts, key) for (s, t, key), (kind, ts) in edges.items()],
    )


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
