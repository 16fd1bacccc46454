"""SIEM content: provex's Sigma rules as Elasticsearch EQL / ES|QL, Splunk SPL and Loki LogQL.

`export(target, paths)` -> [Exported] and `render` live in exporter.siem.export
(they need the optional pySigma backends: `pip install provex[siem]`);
`provex rules export` (exporter/cli/rules.py) calls its `run`.
"""

from __future__ import annotations

TARGET_NAMES = ("elasticsearch-eql", "esql", "splunk", "loki")

__all__ = ["TARGET_NAMES"]
