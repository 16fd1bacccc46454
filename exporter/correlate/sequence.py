"""Incremental state of Sigma correlation rules, one object per correlation.

Every group (the group-by key) keeps only what can still complete a match
inside the timespan, and no more than a fixed number of entries per step, so
state is bounded by time and by count. Matches are found as events arrive:
the event that completes a chain or reaches a count is the decisive one.
"""

from __future__ import annotations

import itertools
import posixpath
from collections import OrderedDict, deque
from dataclasses import dataclass

from prometheus_client import Counter

from exporter.correlate.graph import ProvenanceGraph
from exporter.correlate.loader import Correlation, Rule
from exporter.metrics import REGISTRY
from exporter.model import Event
from exporter.taxonomy.fields import EventView, Value, value_text

STATE_EVICTIONS = Counter(
    "provex_correlate_state_evictions",
    "Correlation state dropped before it could match, by cause (window, budget)",
    ["cause"],
    registry=REGISTRY,
)

MAX_GROUPS = 8192  # groups per correlation
MAX_PER_STEP = 16  # partial matches kept per step and group

Key = tuple[str, ...]


@dataclass(slots=True)
class Match:
    ts: int
    event: Event
    step: int
    values: dict[str, Value]


@dataclass(slots=True)
class Chain:
    """A completed correlation: its group key and the matches in step order."""

    key: dict[str, str]
    matches: list[Match]


class CorrelationState:
    def __init__(self, corr: Correlation, graph: ProvenanceGraph) -> None:
        self.corr = corr
        self.graph = graph
        self.groups: OrderedDict[Key, object] = OrderedDict()
        self._swept = 0
        # fields each step must remember for x-provex-same joins
        self._join_fields: dict[int, list[str]] = {}
        for join in corr.same:
            for step, name in join.items():
                self._join_fields.setdefault(step, []).append(name)

    # ---------------------------------------------------------- entry

    def feed(self, rule: Rule, event: Event, view: EventView) -> list[Chain]:
        corr = self.corr
        names = corr.group_by
        key = tuple(value_text(view.get(corr.field_for(n, rule))) for n in names)
        self._sweep(event.ts_ns)
        if corr.type == "event_count":
            found = self._count(key, event)
        elif corr.type == "value_count":
            found = self._values(key, event, value_text(view.get(corr.field_for(corr.value_field, rule))))
        else:
            found = self._sequence(key, rule, event, view)
        return [Chain(dict(zip(names, key, strict=True)), m) for m in found]

    def _group(self, key: Key, factory: type) -> object:
        groups = self.groups
        group = groups.get(key)
        if group is None:
            group = groups[key] = factory()
            if len(groups) > MAX_GROUPS:
                groups.popitem(last=False)
                STATE_EVICTIONS.labels("budget").inc()
        else:
            groups.move_to_end(key)
        return group

    def _sweep(self, now: int) -> None:
        """Drop groups idle for longer than the timespan (at most once per timespan)."""
        span = self.corr.timespan_ns
        if now - self._swept < span:
            return
        self._swept = now
        horizon = now - span
        stale = [k for k, g in self.groups.items() if _last_ts(g) < horizon]
        for k in stale:
            del self.groups[k]
        if stale:
            STATE_EVICTIONS.labels("window").inc(len(stale))

    # ---------------------------------------------------------- counts

    def _holds(self, n: int) -> bool:
        c = self.corr
        return n >= c.count if c.op == ">=" else n > c.count if c.op == ">" else n == c.count

    def _count(self, key: Key, event: Event) -> list[list[Match]]:
        cap = self.corr.count + 1
        dq: deque[Match] = self._group(key, lambda: deque(maxlen=cap))  # type: ignore[arg-type,assignment]
        horizon = event.ts_ns - self.corr.timespan_ns
        while dq and dq[0].ts < horizon:
            dq.popleft()
        dq.append(Match(event.ts_ns, event, 0, {}))
        if self._holds(len(dq)):
            return [list(dq)[-self.corr.count :] if self.corr.op != ">" else list(dq)]
        return []

    def _values(self, key: Key, event: Event, value: str) -> list[list[Match]]:
        seen: OrderedDict[str, Match] = self._group(key, OrderedDict)  # type: ignore[assignment]
        horizon = event.ts_ns - self.corr.timespan_ns
        while seen and next(iter(seen.values())).ts < horizon:
            seen.popitem(last=False)
        if value == "":
            return []  # an absent value is not a distinct value
        fresh = value not in seen
        seen[value] = Match(event.ts_ns, event, 0, {})
        seen.move_to_end(value)
        while len(seen) > self.corr.count + 1:
            seen.popitem(last=False)
        if fresh and self._holds(len(seen)):
            return [sorted(seen.values(), key=lambda m: m.ts)]
        return []

    # ---------------------------------------------------------- sequences

    def _sequence(self, key: Key, rule: Rule, event: Event, view: EventView) -> list[list[Match]]:
        corr = self.corr
        n = len(corr.steps)
        steps: list[deque[Match]] = self._group(  # type: ignore[assignment]
            key, lambda: [deque(maxlen=MAX_PER_STEP) for _ in range(n)]
        )
        horizon = event.ts_ns - corr.timespan_ns
        for dq in steps:
            while dq and dq[0].ts < horizon:
                dq.popleft()
        ordered = corr.type == "temporal_ordered"
        found: list[list[Match]] = []
        # A rule may be several steps (rules: [a, a]); complete before storing.
        for i in sorted((i for i, s in enumerate(corr.steps) if s is rule), reverse=True):
            values = {f: _path_norm(view.get(f)) for f in self._join_fields.get(i, ())}  # normalised once
            match = Match(event.ts_ns, event, i, values)
            if not ordered or i == n - 1:
                chain = self._complete(steps, match, ordered)
                if chain is not None:
                    found.append(chain)
            if not ordered or i < n - 1:
                steps[i].append(match)
        return found[:1]

    def _complete(self, steps: list[deque[Match]], last: Match, ordered: bool) -> list[Match] | None:
        n = len(steps)
        chosen: dict[int, Match] = {last.step: last}
        order = [i for i in range(n - 1, -1, -1) if i != last.step]

        def search(pos: int, bound: int) -> bool:
            if pos == len(order):
                return self._valid(
                    [chosen[i] for i in range(n)]
                    if ordered
                    else sorted(chosen.values(), key=lambda m: (m.ts, m.step))
                )
            i = order[pos]
            for cand in reversed(steps[i]):  # latest first: the tightest chain
                if ordered and cand.ts > bound:
                    continue
                if cand.event is last.event:
                    continue
                if not self._joins(cand, chosen):
                    continue
                chosen[i] = cand
                if search(pos + 1, cand.ts):
                    return True
                del chosen[i]
            return False

        if search(0, last.ts):
            return [chosen[i] for i in range(n)]
        return None

    def _joins(self, cand: Match, chosen: dict[int, Match]) -> bool:
        for join in self.corr.same:
            if cand.step not in join:
                continue
            mine = cand.values.get(join[cand.step])
            for step, name in join.items():
                other = chosen.get(step)
                if other is not None and step != cand.step and other.values.get(name) != mine:
                    return False
        return True

    def _valid(self, chain: list[Match]) -> bool:
        mode = self.corr.lineage_mode
        if not mode:
            return True
        for prev, nxt in itertools.pairwise(chain):
            if not self._related(prev.event, nxt.event, mode, self.corr.lineage_depth):
                return False
        return True

    def _related(self, first: Event, then: Event, mode: str, depth: int) -> bool:
        """Lineage as the events recorded it (the process table's, which the documents carry
        as provex.lineage, so a SIEM judges the same); the graph's for events without one
        (recorded before provex kept it)."""
        la = first.process.lineage if first.process is not None else []
        lb = then.process.lineage if then.process is not None else []
        if la and lb:
            if mode == "descendant":
                return first.pid in lb
            return not set(la[: depth + 1]).isdisjoint(lb[: depth + 1])
        a, b = first.pid, then.pid
        return self.graph.is_descendant(b, a) if mode == "descendant" else self.graph.kin(a, b, depth)


def _path_norm(value: Value) -> Value:
    if isinstance(value, str) and value.startswith("/"):
        return posixpath.normpath(value)
    return value


def _last_ts(group: object) -> int:
    if isinstance(group, deque):
        return group[-1].ts if group else 0
    if isinstance(group, OrderedDict):
        return next(reversed(group.values())).ts if group else 0
    if isinstance(group, list):
        return max((dq[-1].ts for dq in group if dq), default=0)
    return 0
