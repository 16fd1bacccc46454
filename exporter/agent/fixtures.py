"""Recordings replayed through a rule set: one file (`replay`), and a rule file's fixtures
(`fixture_results`, for `provex rules test`, `provex verify` and a rule reload's check).

Fixtures of a rule file `<dir>/<stem>.yml` are replay files (JSON lines) in
`<fixtures>/<stem>/positive/*.jsonl` (each must raise an alert of a rule
defined in that file) and `<fixtures>/<stem>/negative/*.jsonl` (none may).
`<fixtures>` is --fixtures, else `<dir>/fixtures` (the shipped rules carry
theirs there, so `provex rules test` works from an install).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from exporter.config.schema import CorrelateConfig
from exporter.correlate.engine import Correlator
from exporter.correlate.loader import RuleSet, rule_files
from exporter.model import Alert
from exporter.source.replay import ReplaySource


def replay(ruleset: RuleSet, path: Path, config: CorrelateConfig | None = None) -> tuple[list[Alert], int]:
    """Alerts of one replay file through a fresh correlator (window closed at the end); skipped lines."""
    correlator = Correlator(ruleset, config)
    source = ReplaySource(path)
    alerts: list[Alert] = []
    for event in source:
        alerts += correlator.process(event)
    alerts += correlator.drain()
    return alerts, len(source.skipped)


def _fixture_root(rule_file: Path, fixtures: Path | None) -> Path:
    if fixtures is not None:
        return fixtures / rule_file.stem
    return rule_file.parent / "fixtures" / rule_file.stem


@dataclass
class FixtureResult:
    """One fixture replayed (or, with `case` None, a kind of fixture a rule file lacks)."""

    rule_file: Path
    kind: str  # positive | negative
    case: Path | None
    ok: bool
    detail: str
    alerted: set[str] = field(default_factory=set)  # uids of the file's rules that alerted

    def line(self) -> str:
        if self.case is None:
            return f"FAIL {self.rule_file.name}: {self.detail}"
        return f"{'PASS' if self.ok else 'FAIL'} {self.rule_file.name} {self.kind}/{self.case.name}: {self.detail}"


def fixture_results(
    rs: RuleSet,
    paths: Sequence[str | Path],
    fixtures: str | Path | None = None,
    *,
    where_present: bool = False,
) -> Iterator[FixtureResult]:
    """Replay the positive and negative fixtures of every rule file under `paths` through
    `rs`. `where_present`: a file without fixtures (or whose rules are all disabled) is
    passed over instead of failing (a reload tests what it can)."""
    root = Path(fixtures) if fixtures is not None else None
    for rule_file in rule_files(paths):
        expected = _alerting_ids(rs, str(rule_file))
        folder = _fixture_root(rule_file, root)
        if where_present and not expected:
            continue
        for kind in ("positive", "negative"):
            cases = sorted((folder / kind).glob("*.jsonl"))
            if not cases and not where_present:
                yield FixtureResult(rule_file, kind, None, False, f"no {kind} fixtures in {folder / kind}")
            for case in cases:
                yield _check(rs, rule_file, kind, case, expected)


def _alerting_ids(rs: RuleSet, file: str) -> set[str]:
    ids = {r.uid for r in rs.rules if r.file == file and r.generate}
    return ids | {c.uid for c in rs.correlations if c.file == file}


def _check(rs: RuleSet, rule_file: Path, kind: str, case: Path, expected: set[str]) -> FixtureResult:
    alerts, skipped = replay(rs, case)
    if skipped:
        return FixtureResult(rule_file, kind, case, False, f"{skipped} unreadable line(s)")
    mine = [a for a in alerts if a.rule_id in expected]
    titles = sorted({a.rule_title for a in mine})
    alerted = {a.rule_id for a in mine}
    if kind == "positive":
        detail = f"{len(mine)} alert(s) {titles}" if mine else "no alert"
        return FixtureResult(rule_file, kind, case, bool(mine), detail, alerted)
    detail = "silent" if not mine else f"{len(mine)} unexpected alert(s) {titles}"
    return FixtureResult(rule_file, kind, case, not mine, detail, alerted)
