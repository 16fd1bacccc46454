"""The native core against the Python reference, on the same streams: every annotation the
provenance graph writes on every event, the graph's size and evictions, and (further down)
every alert. The reference is exporter/correlate/{graph,provenance,fields,compile,sequence}.py;
a difference here is a bug in the port (or a change to the reference not ported yet)."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from bench.helpers.streams import streams
from exporter.config.schema import CorrelateConfig
from exporter.correlate import DEFAULT_RULES_DIR, load_rules, provenance, sequence, survey
from exporter.correlate import graph as reference_graph
from exporter.correlate.engine import Correlator
from exporter.correlate.graph import ProvenanceGraph
from exporter.correlate.native import load
from exporter.correlate.native.ir import condition_ir
from exporter.model import ContainerInfo, Event, EventType, PodInfo, ProcessInfo, encode_event
from exporter.taxonomy.fields import FIELDS, EventView

core = load()  # the suite needs the core built (make setup builds it): a failure here, not a skip
STREAMS = streams()


def test_the_core_was_built_from_these_sources():
    from exporter.correlate.native import source_digest

    assert source_digest() == core.SOURCE_DIGEST


def test_the_bounds_are_the_references():
    for name, value in core.BOUNDS.items():
        expected = getattr(reference_graph, name, getattr(reference_graph, f"_{name}", None))
        if expected is None:
            expected = getattr(provenance, name, None) or getattr(sequence, name)
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


# ---------------------------------------------------------------- fields, rules, alerts

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "reference" / "sigma-linux"
RULESET = load_rules([DEFAULT_RULES_DIR])
# The default rules and every SigmaHQ Linux rule provex can evaluate: wildcards, cased
# strings, regular expressions, value lists, null and exists tests the defaults lack.
WIDE = survey([DEFAULT_RULES_DIR, CORPUS]).ruleset


def _annotated(name: str, limit: int | None = None) -> list:
    """A stream's events as the reference's graph annotated them."""
    events = STREAMS[name]()[:limit]
    graph = ProvenanceGraph(600, 100_000, 150_000)
    for e in events:
        graph.add(e)
    return events


@pytest.mark.parametrize(
    "name", ["fixtures/all-in-one-stream", "mapping-records", "recording", "soak/classic", "soak/context"]
)
def test_every_field_matches_the_reference(name):
    nat = core.Core(600, 100_000, 150_000)
    for i, e in enumerate(_annotated(name, 4000)):
        for field, spec in FIELDS.items():
            assert nat.field(field, e) == spec.get(e), f"event {i} ({e.id}): {field}"


def _literal_events(ruleset, n: int, seed: int = 23) -> list[Event]:
    """Events made of the rules' own values (each field's literals, their case changed, glued
    to each other and to paths): enough of them match, and more nearly match."""
    rng = random.Random(seed)
    words = sorted({str(v) for r in ruleset.rules for v in _literals(condition_ir(r.condition))})
    words += ["", "/", "/tmp", "x", "10.0.0.1", "::1", "172.31.255.1", "8.8.8.8", "true", "0", "-1"]
    events = []
    for i in range(n):

        def word() -> str:
            w = rng.choice(words)
            return rng.choice([w, w.upper(), w.title(), f"/usr/bin/{w}", f"{w} {rng.choice(words)}"])

        kind = rng.choice([EventType.EXEC, EventType.OPEN, EventType.CONNECT, EventType.ACCEPT,
                           EventType.MOUNT, EventType.SETNS, EventType.UNSHARE])  # fmt: skip
        events.append(
            Event(
                id=f"lit{i}", type=kind, syscall=rng.choice(["execve", "openat", "connect", "mount", kind.value]),
                ts_ns=i, pid=100 + i % 50, tid=100 + i % 50, ppid=rng.choice([0, 1, 99]), uid=rng.choice([0, 1000]),
                comm=word()[:16], path=word(), argv=[word() for _ in range(rng.randrange(4))], flags=rng.randrange(0o4000),
                source=word(), target=word(), fstype=word(), family=rng.choice([1, 2, 10]), daddr=rng.choice(words),
                dport=rng.randrange(70000), saddr=rng.choice(words), nstype=rng.choice([0, 0x10000000, 0x20000]),
                ret=rng.choice([0, 3, -1, -115]), resolved_path=rng.choice(["", word()]), exe_name=word(),
                container=rng.choice([None, ContainerInfo(id="c1", image=word(), pod=PodInfo(uid="u", namespace=word(), ips=["10.1.1.1"]))]),
                process=rng.choice([None, ProcessInfo(pid=1, exe=word(), argv=[word()], parent_exe=word(), parent_argv=[word()], ancestors=[word()])]),
            )
        )  # fmt: skip
    return events


def _literals(ir):
    if isinstance(ir, tuple | list):
        for item in ir:
            yield from _literals(item)
    elif isinstance(ir, str) and ir not in ("and", "or", "not", "field", "element", "same", "str", "set"):
        yield ir


def test_every_rule_predicate_matches_the_reference():
    nat = core.Core(600, 100_000, 150_000)
    nat.use_rules([(r, condition_ir(r.condition)) for r in WIDE.rules], [], {})
    events = _literal_events(WIDE, 3000) + _annotated("fixtures/all-in-one-stream") + _annotated("recording")
    matched = 0
    for e in events:
        want = [bool(r.predicate(EventView(e))) for r in WIDE.rules]
        assert nat.predicates(e) == want, e.id
        matched += sum(want)
    assert matched > 200  # the generated events do reach the rules


def _run(engine: str, ruleset, events) -> tuple[bytes, bytes]:
    correlator = Correlator(ruleset, CorrelateConfig(engine=engine))
    assert correlator.engine == engine
    alerts = [a for e in events for a in correlator.process(e)] + correlator.drain()
    return msgspec.json.encode(alerts), msgspec.json.encode(events)


@pytest.mark.parametrize("name", list(STREAMS))
def test_alerts_and_annotations_match_the_reference(name):
    ref_alerts, ref_events = _run("python", RULESET, STREAMS[name]())
    nat_alerts, nat_events = _run("native", RULESET, STREAMS[name]())
    assert nat_alerts == ref_alerts
    assert nat_events == ref_events


def test_alerts_of_every_evaluable_sigmahq_rule_match_the_reference():
    events = _literal_events(WIDE, 3000)
    ref_alerts, _ = _run("python", WIDE, _literal_events(WIDE, 3000))
    nat_alerts, _ = _run("native", WIDE, events)
    assert nat_alerts == ref_alerts
    assert len(msgspec.json.decode(nat_alerts)) > 50
