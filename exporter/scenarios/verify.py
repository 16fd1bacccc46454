"""`provex verify`: prove on this node that every rule still fires.

What it does and its options: exporter.cli.scenarios (the `--help` text). A rule
with no canary scenario (a user's rule) is proved by its positive fixtures
(`<rules dir>/fixtures/<file stem>/positive/*.jsonl`, as `provex rules test`
reads them), replayed through the rule set the agent loads with this config.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import msgspec

from exporter.agent.fixtures import replay
from exporter.config import ConfigError, load_config
from exporter.correlate.engine import configured_rules
from exporter.correlate.errors import RulesError
from exporter.correlate.loader import Correlation, Rule, RuleSet
from exporter.errors import InputError
from exporter.scenarios.library import ScenarioError, canaries, load_library
from exporter.scenarios.session import Outcome, judge, live_session

LABELS = {
    "fired": "fired",
    "late": "fired late",
    "missed": "did not fire",
    "error": "canary failed",
    "untested": "no canary: give it positive fixtures",
}


@dataclass
class RuleResult:
    rule: str
    canary: str
    status: str
    latency_ms: float | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "fired"


def agent_args(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    if args.config:
        out += ["--config", args.config]
    for item in args.overrides:
        out += ["--set", item]
    for directory in args.rules_dir or []:
        out += ["--rules-dir", directory]
    return out


def agent_rulesets(args: argparse.Namespace) -> tuple[RuleSet, RuleSet]:
    """The rules the agent loads with this verify's --config, --set and --rules-dir; and the
    same with none disabled (a disabled rule is verified too, and does not fire)."""
    flags = [("--rules-dir", "correlate.rules_dirs", args.rules_dir)] if args.rules_dir else []
    try:
        config = load_config(args.config, list(args.overrides), flags=flags).correlate
        every = msgspec.structs.replace(config, disabled_rules=[])
        return configured_rules(config), configured_rules(every)
    except (ConfigError, RulesError) as exc:
        raise ScenarioError([exc]) from None


def fixture_canaries(ruleset: RuleSet, rules: list[Rule | Correlation]) -> list[RuleResult]:
    """Each rule proved by its positive fixtures replayed through `ruleset`: fired when one
    of them raises its alert; untested when it has none."""
    results = []
    for rule in rules:
        folder = Path(rule.file).parent / "fixtures" / Path(rule.file).stem / "positive"
        cases = sorted(folder.glob("*.jsonl"))
        fired = next(
            (case for case in cases if rule.uid in {a.rule_id for a in replay(ruleset, case)[0]}), None
        )
        if fired is not None:
            results.append(RuleResult(rule.name, f"fixture {fired.name}", "fired", None))
        elif cases:
            detail = f"no alert from {len(cases)} positive fixture(s) in {folder}"
            results.append(RuleResult(rule.name, "fixtures", "missed", None, detail))
        else:
            results.append(RuleResult(rule.name, "-", "untested", None, f"none in {folder}"))
    return results


def run_verify(args: argparse.Namespace) -> list[RuleResult]:
    wanted = canaries(load_library())
    ruleset, every = agent_rulesets(args)
    alerting: list[Rule | Correlation] = [r for r in every.rules if r.generate]
    alerting += every.correlations
    # Rules of the agent's set that no scenario covers: proved by their fixtures.
    uncovered = [r for r in alerting if r.name not in wanted and r.uid not in wanted]
    if args.rule:
        known = set(wanted) | {r.name for r in uncovered}
        unknown = sorted(set(args.rule) - known)
        if unknown:
            raise ScenarioError(
                [
                    InputError(
                        f"no canary for {', '.join(unknown)}", "--rule", f"known: {', '.join(sorted(known))}"
                    )
                ]
            )
        wanted = {r: s for r, s in wanted.items() if r in args.rule}
        uncovered = [r for r in uncovered if r.name in args.rule]
    proved_by_fixtures = fixture_canaries(ruleset, uncovered)
    if not wanted:
        return proved_by_fixtures
    results = []
    with live_session(args.workdir, agent_args(args)) as live:
        session = live.session
        prepared = session.prepare([(s, 0) for s in wanted.values()])
        runs = [live.lab.run(p) for p in prepared]
        session.wait_all(runs, args.timeout)
        alerts = live.agent.feed.alerts() if live.agent.feed else []
        for run in runs:
            outcome = judge(run, alerts, session.rules, args.late_ms)
            results.append(_result(outcome))
    return results + proved_by_fixtures


def _result(outcome: Outcome) -> RuleResult:
    s = outcome.scenario
    detail = ""
    if outcome.status == "error":
        detail = (outcome.run.stderr or outcome.run.stdout).strip().splitlines()[-1:] or [""]
        detail = f"exit {outcome.run.returncode}: {detail[0][:120]}"
    return RuleResult(s.rule, s.name, outcome.status, outcome.latency_ms, detail)


def render(results: list[RuleResult]) -> str:
    rows = [("RULE", "CANARY", "RESULT", "LATENCY")]
    for r in results:
        latency = f"{r.latency_ms:.1f} ms" if r.latency_ms is not None else "-"
        rows.append((r.rule, r.canary, LABELS[r.status] + (f" ({r.detail})" if r.detail else ""), latency))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)) for row in rows
    ]
    failed = [r for r in results if not r.ok]
    lines.append("")
    lines.append(
        f"{len(results) - len(failed)}/{len(results)} rules fired in time"
        + (f"; failing: {', '.join(r.rule for r in failed)}" if failed else "")
    )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Verify, then print the results (exit status 0 only if every rule fired in time)."""
    results = run_verify(args)
    if args.json:
        doc = {
            "ok": all(r.ok for r in results),
            "late_ms": args.late_ms,
            "rules": [r.__dict__ for r in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(render(results))
    return 0 if all(r.ok for r in results) else 1
