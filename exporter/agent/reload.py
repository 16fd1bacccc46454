"""Rule reload: on SIGHUP, and when a rules directory changes (the chart's ConfigMap).

As in gunicorn's arbiter, the signal handler only queues the request (an Event);
the event loop acts on it in `tick`. The new set is loaded on a thread of its own,
beside the running set (compiling the default rules takes ~60 ms), and its user
rule files' fixtures are replayed in a child process (`python -m
exporter.agent.reload`: its correlators' metrics and memory are its own, and it
holds no lock of the agent's), so the loop goes on meanwhile; then the loop swaps
the set into the running Correlator,
whose provenance graph, de-duplication and unchanged chains stay. A set that does
not load, or whose fixtures fail, is refused with every error (file:line), and
the running set keeps running. `provex_rules_info{digest}` names the set loaded.

A rules directory is polled (names, inodes, sizes and times of its rule files):
a ConfigMap volume swaps its `..data` link to a new directory, which changes every
file behind the links at once. A change is acted on once it has held for one poll,
so an editor's save in several writes is read whole.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from prometheus_client import Counter, Gauge

from exporter.agent.fixtures import fixture_results
from exporter.config.schema import CorrelateConfig
from exporter.correlate.engine import Correlator, configured_rules
from exporter.correlate.errors import RulesError
from exporter.correlate.loader import RuleSet, rule_files
from exporter.metrics import REGISTRY

log = logging.getLogger("provex.agent")

POLL_S = 2.0
FIXTURES_TIMEOUT_S = 300.0

RULES_INFO = Gauge(
    "provex_rules_info",
    "Always 1: the rule set loaded (its digest, as in every alert) and how many rules alert",
    ["digest", "rules"],
    registry=REGISTRY,
)
RELOADS = Counter(
    "provex_rules_reloads",
    "Rule reloads, by result (applied, refused, unchanged)",
    ["result"],
    registry=REGISTRY,
)


def alerting_rules(ruleset: RuleSet) -> list[str]:
    """The names of the rules that raise alerts (chains' steps do not alert alone)."""
    return [r.name for r in ruleset.rules if r.generate] + [c.name for c in ruleset.correlations]


def publish(ruleset: RuleSet) -> None:
    """provex_rules_info for this set only."""
    RULES_INFO.clear()
    RULES_INFO.labels(ruleset.digest, str(len(alerting_rules(ruleset)))).set(1)


Stamp = tuple[tuple[str, int, int, int], ...]


def stamp(directories: list[str]) -> Stamp:
    """What a change of the rule files under `directories` changes (stat follows links)."""
    out = []
    for path in rule_files([d for d in directories if os.path.isdir(d)]):
        try:
            st = path.stat()
        except OSError:  # gone between the listing and the stat: the next poll sees it
            continue
        out.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


@dataclass
class Outcome:
    """What a build beside the running set came to."""

    reason: str
    ruleset: RuleSet | None = None
    errors: list[str] = field(default_factory=list)


def build(config: CorrelateConfig, reason: str) -> Outcome:
    """Load the config's rule set and replay its user rule files' fixtures (where present)."""
    try:
        ruleset = configured_rules(config)
    except RulesError as exc:
        return Outcome(reason, errors=[str(e) for e in exc.errors])
    failed = fixture_failures(config) if has_fixtures(config.rules_dirs) else []
    if failed:
        return Outcome(reason, errors=failed)
    return Outcome(reason, ruleset)


def has_fixtures(directories: list[str]) -> bool:
    return any((p.parent / "fixtures" / p.stem).is_dir() for p in rule_files(directories))


def fixture_failures(config: CorrelateConfig) -> list[str]:
    """The failed fixtures of the config's user rule files, replayed in a child process."""
    try:
        child = subprocess.run(
            [sys.executable, "-m", "exporter.agent.reload", json.dumps(msgspec.to_builtins(config))],
            capture_output=True,
            text=True,
            timeout=FIXTURES_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"fixtures not replayed: {exc}"]
    if child.returncode != 0:
        return [f"fixtures not replayed: exit {child.returncode}: {child.stderr.strip()[-500:]}"]
    return [f"fixture failed: {line}" for line in json.loads(child.stdout)]


def main(argv: list[str]) -> int:
    """The child: print the failed fixtures' lines (JSON) of a config's user rule files."""
    config = msgspec.convert(json.loads(argv[0]), CorrelateConfig)
    ruleset = configured_rules(config)
    results = fixture_results(ruleset, config.rules_dirs, where_present=True)
    print(json.dumps([r.line() for r in results if not r.ok]))
    return 0


class RuleReloader:
    """Reloads the correlator's rules when asked (`requested`, set by SIGHUP) or when a rules
    directory changed; call `tick` from the event loop."""

    def __init__(
        self,
        config: CorrelateConfig,
        correlator: Correlator,
        requested: threading.Event,
        poll_s: float = POLL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.correlator = correlator
        self.requested = requested
        self.poll_s = poll_s
        self._clock = clock
        self._loaded = self._seen = stamp(config.rules_dirs)
        self._next_poll = clock() + poll_s
        self._worker: threading.Thread | None = None
        self._outcome: Outcome | None = None
        publish(correlator.ruleset)

    def tick(self) -> None:
        """On the event loop: swap in a finished build; start one when asked or changed."""
        if self._outcome is not None:
            outcome, self._outcome, self._worker = self._outcome, None, None
            self._finish(outcome)
        if self._worker is not None:
            return
        reason = ""
        if self.requested.is_set():
            self.requested.clear()
            reason = "SIGHUP"
        elif self.config.rules_dirs and self._clock() >= self._next_poll:
            self._next_poll = self._clock() + self.poll_s
            now = stamp(self.config.rules_dirs)
            if now != self._loaded and now == self._seen:  # changed, and held for a poll
                reason = "rules directory changed"
            self._seen = now
        if reason:
            self._loaded = self._seen = stamp(self.config.rules_dirs)
            self._worker = threading.Thread(
                target=self._build, args=(reason,), name="provex-reload", daemon=True
            )
            self._worker.start()

    def _build(self, reason: str) -> None:
        self._outcome = build(self.config, reason)

    def wait(self, timeout_s: float = 60.0) -> None:
        """Until a build in progress has finished (tests, shutdown)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout_s)

    def _finish(self, outcome: Outcome) -> None:
        running = self.correlator.ruleset
        if outcome.ruleset is None:
            RELOADS.labels("refused").inc()
            log.error(
                "rule reload refused: the running rules keep running",
                extra={
                    "fields": {"reason": outcome.reason, "digest": running.digest, "errors": outcome.errors}
                },
            )
            return
        new = outcome.ruleset
        if new.digest == running.digest:
            RELOADS.labels("unchanged").inc()
            log.info("rules unchanged", extra={"fields": {"reason": outcome.reason, "digest": new.digest}})
            return
        self.correlator.use_rules(new)
        publish(new)
        RELOADS.labels("applied").inc()
        before, after = set(alerting_rules(running)), set(alerting_rules(new))
        log.info(
            "rules reloaded",
            extra={
                "fields": {
                    "reason": outcome.reason,
                    "digest": new.digest,
                    "previous_digest": running.digest,
                    "rules": len(after),
                    "added": sorted(after - before),
                    "removed": sorted(before - after),
                }
            },
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
