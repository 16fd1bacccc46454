"""SIEM content: provex's Sigma rules as Elasticsearch EQL / ES|QL, Splunk SPL and Loki LogQL.

`export(target, paths)` -> [Exported] and `render` live in exporter.siem.export
(they need the optional pySigma backends: `pip install provex[siem]`);
`run_cli` is what `provex rules export` calls.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

TARGET_NAMES = ("elasticsearch-eql", "esql", "splunk", "loki")


def run_cli(target: str, paths: Sequence[str], output: str | None) -> int:
    try:
        from exporter.siem.export import run
    except ImportError as exc:  # the optional extra is missing
        print(f"ERROR {exc}: install the SIEM backends with `pip install 'provex[siem]'`", file=sys.stderr)
        return 2
    return run(target, paths, output)


__all__ = ["TARGET_NAMES", "run_cli"]
