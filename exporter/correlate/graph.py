"""The provenance graph: who ran, forked, opened, connected, entered and mounted what.

A networkx MultiDiGraph over a bounded window of EVENT time (ts_ns, never the
wall clock, so a replay builds the same graph). Nodes are processes, files,
endpoints, namespaces, mounts and containers; each edge is one event, keyed
by the event id and stamped with its time. Oldest first is evicted when an
edge or node leaves the window or the node/edge budget is exceeded, so memory
stays flat however long the input runs.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable

import networkx as nx
from prometheus_client import Counter, Gauge

from exporter.metrics import REGISTRY
from exporter.model import Event, EventType

GRAPH_NODES = Gauge("provex_correlate_graph_nodes", "Nodes in the provenance graph", registry=REGISTRY)
GRAPH_EDGES = Gauge("provex_correlate_graph_edges", "Edges in the provenance graph", registry=REGISTRY)
GRAPH_EVICTIONS = Counter(
    "provex_correlate_graph_evictions",
    "Graph nodes and edges evicted, by kind and cause (window, budget)",
    ["kind", "cause"],
    registry=REGISTRY,
)

Node = tuple[Hashable, ...]
_EDGE = {
    EventType.EXEC: "executed",
    EventType.OPEN: "opened",
    EventType.CONNECT: "connected",
    EventType.SETNS: "entered-namespace",
    EventType.UNSHARE: "entered-namespace",
    EventType.MOUNT: "mounted",
    EventType.FORK: "forked",
}
_METRIC_EVERY = 1024  # events between gauge updates (a gauge set per event is wasted work)


class ProvenanceGraph:
    def __init__(self, window_s: float, max_nodes: int, max_edges: int) -> None:
        if window_s <= 0 or max_nodes < 16 or max_edges < 16:
            raise ValueError("correlate.window_s must be > 0, max_nodes and max_edges >= 16")
        self.g = nx.MultiDiGraph()
        self.window_ns = int(window_s * 1_000_000_000)
        self.max_nodes = max_nodes
        self.max_edges = max_edges
        self.now_ns = 0
        self._edges: deque[tuple[int, Node, Node, str]] = deque()  # insertion (≈ time) order
        self._touched: OrderedDict[Node, int] = OrderedDict()  # node -> last ts, oldest first
        self.evicted = {"node": 0, "edge": 0}
        self._since_metrics = 0
        self.edge_count = 0  # networkx counts multigraph edges in O(nodes): keep our own

    # ---------------------------------------------------------- building

    def add(self, event: Event) -> None:
        ts = event.ts_ns
        if ts > self.now_ns:
            self.now_ns = ts
        proc = self._process(event)
        kind = _EDGE.get(event.type)
        if kind is not None:
            target = self._target(event)
            if target is not None:
                self._node(target, ts)
                self._edge(proc, target, event.id, kind, ts)
        self._evict()
        self._since_metrics += 1
        if self._since_metrics >= _METRIC_EVERY:
            self.publish()

    def _process(self, event: Event) -> Node:
        node: Node = ("proc", event.pid)
        attrs = self._node(node, event.ts_ns)
        if event.ppid:
            attrs["ppid"] = event.ppid
        if event.type is EventType.EXEC and event.path:
            attrs["exe"] = event.path
        if event.container is not None and "container" not in attrs:
            attrs["container"] = event.container.id
            cnode: Node = ("container", event.container.id)
            self._node(cnode, event.ts_ns)
            self._edge(cnode, node, event.id + "/in", "contains", event.ts_ns)
        return node

    def _edge(self, u: Node, v: Node, key: str, kind: str, ts: int) -> None:
        if not self.g.has_edge(u, v, key):
            self.edge_count += 1
        self.g.add_edge(u, v, key=key, kind=kind, ts=ts)
        self._edges.append((ts, u, v, key))

    def _target(self, event: Event) -> Node | None:
        t = event.type
        cid = event.container.id if event.container is not None else ""
        if t is EventType.FORK:
            child: Node = ("proc", event.child_pid)
            self._node(child, event.ts_ns)["ppid"] = event.pid
            return child
        if t in (EventType.OPEN, EventType.EXEC):
            return ("file", cid, event.path)
        if t is EventType.CONNECT:
            return ("endpoint", event.daddr, event.dport)
        if t is EventType.SETNS:
            return ("namespace", cid, f"fd:{event.pid}:{event.fd}", event.nstype)
        if t is EventType.UNSHARE:
            return ("namespace", cid, f"new:{event.id}", event.nstype)
        if t is EventType.MOUNT:
            return ("mount", cid, event.target or event.source or event.path, event.fstype)
        return None

    def _node(self, node: Node, ts: int) -> dict:
        touched = self._touched
        if node in touched:
            touched.move_to_end(node)
            touched[node] = ts
            return self.g.nodes[node]
        touched[node] = ts
        self.g.add_node(node)
        return self.g.nodes[node]

    # ---------------------------------------------------------- bounds

    def _evict(self) -> None:
        horizon = self.now_ns - self.window_ns
        edges, g = self._edges, self.g
        while edges and (edges[0][0] < horizon or len(edges) > self.max_edges):
            ts, u, v, key = edges.popleft()
            if g.has_edge(u, v, key):
                g.remove_edge(u, v, key)
                self.edge_count -= 1
                cause = "window" if ts < horizon else "budget"
                self._count("edge", cause)
                # a node left without edges is dropped with its last edge, not kept to the window's end
                for node in (u, v):
                    if g.degree(node) == 0:
                        g.remove_node(node)
                        self._touched.pop(node, None)
                        self._count("node", cause)
        touched = self._touched
        while touched:
            node, ts = next(iter(touched.items()))
            if ts >= horizon and len(touched) <= self.max_nodes:
                break
            touched.popitem(last=False)
            # a self-loop counts twice in degree; nodes here never have one
            gone = g.degree(node)
            g.remove_node(node)
            self.edge_count -= gone
            cause = "window" if ts < horizon else "budget"
            self._count("node", cause)
            if gone:
                self._count("edge", cause, gone)

    def _count(self, kind: str, cause: str, n: int = 1) -> None:
        self.evicted[kind] += n
        GRAPH_EVICTIONS.labels(kind, cause).inc(n)

    def publish(self) -> None:
        self._since_metrics = 0
        GRAPH_NODES.set(self.g.number_of_nodes())
        GRAPH_EDGES.set(self.edge_count)

    @property
    def size(self) -> tuple[int, int]:
        return self.g.number_of_nodes(), self.edge_count

    # ---------------------------------------------------------- lineage

    def parent(self, pid: int) -> int:
        attrs = self.g.nodes.get(("proc", pid))
        return attrs.get("ppid", 0) if attrs else 0

    def ancestors(self, pid: int, depth: int) -> list[int]:
        """pid itself, then its parents, nearest first, at most `depth` generations up."""
        chain = [pid]
        for _ in range(depth):
            ppid = self.parent(chain[-1])
            if not ppid or ppid in chain:
                break
            chain.append(ppid)
        return chain

    def is_descendant(self, pid: int, of: int, depth: int = 32) -> bool:
        """pid is `of` or a descendant of it (as far as the window remembers)."""
        return of in self.ancestors(pid, depth)

    def kin(self, a: int, b: int, depth: int) -> bool:
        """a and b share an ancestor at most `depth` generations above each (0: same process)."""
        return bool(set(self.ancestors(a, depth)) & set(self.ancestors(b, depth)))
