"""The correlate stage: Sigma rules over single events and chains, on a provenance graph.

Public surface: `build_correlator(config)` -> `Correlator` (`process(event)`,
`flush(now_ns)`, `drain()`), `load_rules`, `survey`, and the errors.
"""

from exporter.correlate.engine import Correlator, build_correlator
from exporter.correlate.errors import RuleError, RulesError
from exporter.correlate.loader import DEFAULT_RULES_DIR, load_rules, survey

__all__ = [
    "DEFAULT_RULES_DIR",
    "Correlator",
    "RuleError",
    "RulesError",
    "build_correlator",
    "load_rules",
    "survey",
]
