"""The native core against the Python reference, on the same streams: every annotation the
provenance graph writes on every event, the graph's size and evictions, and (further down)
every alert. The reference is exporter/correlate/{graph,provenance,fields,compile,sequence}.py;
a difference here is a bug in the port (or a change to the reference not ported yet)."""

from __future__ import annotations

import pytest

from exporter.correlate import graph as reference_graph
from exporter.correlate import provenance
from exporter.correlate.graph import ProvenanceGraph
from exporter.correlate.native import load
from exporter.model import encode_event

from .native_streams import streams

core = load()  # the suite needs the core built (make setup builds it): a failure here, not a skip
STREAMS = streams()


def test_the_core_was_built_from_these_sources():
    from exporter.correlate.native import source_digest

    assert source_digest() == core.SOURCE_DIGEST


def test_the_bounds_are_the_references():
    for name, value in core.BOUNDS.items():
        expected = getattr(reference_graph, name, getattr(reference_graph, f"_{name}", None))
        if expected is None:
            expected = getattr(provenance, name)
        assert value == expected, name


@pytest.mark.parametrize("name", list(STREAMS))
def test_graph_annotations_match_the_reference(name):
    ref_events, nat_events = STREAMS[name](), STREAMS[name]()
    ref = ProvenanceGraph(600, 100_000, 150_000)
    nat = core.Graph(600, 100_000, 150_000)
    for i, (a, b) in enumerate(zip(ref_events, nat_events, strict=True)):
        ref.add(a)
        nat.add(b)
        assert [e.id for e in ref.take_rejudged()] == [e.id for e in nat.take_rejudged()], i
        assert encode_event(a) == encode_event(b), f"event {i} ({a.id})"
    # Executions judged again later carry what was learned after them.
    assert [encode_event(e) for e in ref_events] == [encode_event(e) for e in nat_events]
    assert nat.size == ref.size
    assert nat.evicted == ref.evicted


@pytest.mark.parametrize(
    ("max_nodes", "max_edges", "window_s"), [(64, 64, 600), (500, 200, 30), (4000, 100, 5)]
)
def test_graph_bounds_evict_what_the_reference_evicts(max_nodes, max_edges, window_s):
    # Small budgets and windows, so eviction (by budget, fairly between containers, and by
    # window) runs all the time: the same state must go, and the same paths resolve after.
    load_stream = STREAMS["soak/context"]
    ref_events, nat_events = load_stream()[:12_000], load_stream()[:12_000]
    ref = ProvenanceGraph(window_s, max_nodes, max_edges)
    nat = core.Graph(window_s, max_nodes, max_edges)
    for i, (a, b) in enumerate(zip(ref_events, nat_events, strict=True)):
        ref.add(a)
        nat.add(b)
        assert encode_event(a) == encode_event(b), f"event {i} ({a.id})"
        if i % 997 == 0:
            assert nat.size == ref.size, i
    ref.publish()
    nat.publish()
    assert nat.size == ref.size
    assert nat.evicted == ref.evicted
