"""A held-out list's before/after table, from bench/eval.py's eval.json files.

    python bench/variants/report.py bench/variants/heldout2.yaml BEFORE/eval.json [AFTER/eval.json]

Prints Markdown: per family, then per scenario (attacks: trials detected by the expected rule,
and every rule that alerted in the last run; benign twins: trials with any alert), with a
column per run. A run given as "-" is a column still to fill; a scenario a run did not have
shows "-". Rules a scenario raises by design (`also`) are marked "(also)".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from exporter.scenarios.library import Scenario, load_library, rule_table  # noqa: E402

Run = dict[str, Any] | None  # None: not measured yet


def _cell(run: Run, name: str) -> str:
    if run is None:
        return ""
    row = run["by_scenario"].get(name)
    if row is None:
        return "-"
    valid = row["trials"] - row["errors"]
    errors = f" ({row['errors']} errors)" if row["errors"] else ""
    if "detected" in row:
        return f"{row['detected']}/{valid}{errors}"
    return f"{row['trials_with_alerts']}/{valid}{errors}"


def _fired(run: dict[str, Any], scenario: Scenario, titles: dict[str, str]) -> str:
    row = run["by_scenario"].get(scenario.name) or {}
    by_rule = (
        row.get("trials_alerted_by_rule") if "detected" in row else {r: None for r in row.get("rules", [])}
    )
    if not by_rule:
        return ""
    also = {titles.get(name, name) for name in scenario.also}
    parts = []
    for title, trials in by_rule.items():
        mark = " (also)" if title in also else ""
        parts.append(f"{title}{mark}" + (f": {trials}" if trials is not None else ""))
    return "; ".join(parts)


def _family_rows(scenarios: list[Scenario], runs: list[Run]) -> list[str]:
    lines = []
    for key in sorted({f"{s.family} ({s.kind})" for s in scenarios}):
        cells = []
        for run in runs:
            row = run.get("by_family", {}).get(key) if run is not None else None
            if run is None:
                cells.append("")
            elif row is None:
                cells.append("-")
            elif "detected" in row:
                cells.append(f"{row['detected']}/{row['trials'] - row['errors']}")
            else:
                cells.append(f"{row['trials_with_alerts']}/{row['trials'] - row['errors']} alerted")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def report(library: Path, runs: list[Run], labels: list[str]) -> str:
    scenarios = load_library([library])
    measured = [(run, label) for run, label in zip(runs, labels, strict=True) if run is not None]
    last, last_label = measured[-1]
    rules = rule_table(scenarios)
    titles = {name: ref.title for name, ref in rules.items()}
    head = " | ".join(labels)
    rule_of = {s.name: s.rule + (" (new)" if rules[s.rule].pending else "") for s in scenarios if s.rule}
    lines = [
        "| family | " + head + " |",
        "| --- |" + " --- |" * len(runs),
        *_family_rows(scenarios, runs),
        "",
    ]
    lines += [
        "| form | family | expected rule | " + head + f" | what alerted ({last_label}, trials) |",
        "| --- | --- | --- |" + " --- |" * len(runs) + " --- |",
    ]
    for s in (s for s in scenarios if s.kind == "attack"):
        cells = " | ".join(_cell(run, s.name) for run in runs)
        lines.append(f"| {s.name} | {s.family} | {rule_of[s.name]} | {cells} | {_fired(last, s, titles)} |")
    lines += [
        "",
        "| benign twin | family | " + " | ".join(f"{label} alerted" for label in labels) + " | rules |",
        "| --- | --- |" + " --- |" * len(runs) + " --- |",
    ]
    for s in (s for s in scenarios if s.kind == "benign"):
        cells = " | ".join(_cell(run, s.name) for run in runs)
        lines.append(f"| {s.name} | {s.family} | {cells} | {_fired(last, s, titles)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library", type=Path, help="the held-out scenario file")
    parser.add_argument("runs", nargs="+", help='eval.json of each run, oldest first ("-": a column to fill)')
    parser.add_argument("--label", action="append", help="column label per run (default: before, after)")
    args = parser.parse_args(argv)
    labels = args.label or ["before", "after", "run 3", "run 4"][: len(args.runs)]
    if len(labels) != len(args.runs):
        parser.error("give one --label per run")
    runs = [None if path == "-" else json.loads(Path(path).read_text()) for path in args.runs]
    if all(run is None for run in runs):
        parser.error("give at least one eval.json")
    sys.stdout.write(report(args.library, runs, labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
