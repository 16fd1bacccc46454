"""How the interpreter is set for a long stream of events (the agent, a replay).

Every event allocates a few dozen short-lived objects (the event, its document, its OTLP
record), and the ones that stay (the provenance graph, the process table, compiled rules)
are many: with Python's default thresholds the collector ran every 700 allocations and
walked the survivors again and again. A full collection over a large provenance graph held
alerts for hundreds of ms (bench/eval.py: p95 333 ms with the defaults), and the young
collections alone took ~40 % of a replay to ECS (bench/replay_bench.py).
"""

from __future__ import annotations

import gc
import sys


def tune_gc(switch_interval_s: float | None = None) -> None:
    """Freeze what start-up built (BCC, compiled rules, the process table from /proc) out of
    every collection and collect the young generation less often. `switch_interval_s`: how
    soon a thread waiting for the interpreter gets it (Python's default is 5 ms)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20000, 50, 50)
    if switch_interval_s is not None:
        sys.setswitchinterval(switch_interval_s)
