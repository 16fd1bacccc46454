"""`provex verify`: prove on this node that every rule still fires.

What it does and its options: exporter.scenarios.cli (the `--help` text).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from exporter.errors import InputError
from exporter.scenarios.library import ScenarioError, canaries, load_library
from exporter.scenarios.session import Outcome, judge, live_session

LABELS = {"fired": "fired", "late": "fired late", "missed": "did not fire", "error": "canary failed"}


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


def run_verify(args: argparse.Namespace) -> list[RuleResult]:
    wanted = canaries(load_library())
    if args.rule:
        unknown = sorted(set(args.rule) - set(wanted))
        if unknown:
            known = ", ".join(sorted(wanted))
            raise ScenarioError(
                [InputError(f"no canary for {', '.join(unknown)}", "--rule", f"known: {known}")]
            )
        wanted = {r: s for r, s in wanted.items() if r in args.rule}
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
    return results


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
