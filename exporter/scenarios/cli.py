"""The `provex demo` and `provex verify` subcommands: their options and help.

Only argparse wiring, so that building the CLI's parser (every command does) does not
import the scenario machinery (the lab, runc, the API-server stand-in).
"""

from __future__ import annotations

import argparse
from typing import Any

DEMO = """\
Starts the real agent (a subprocess) and a stand-in Kubernetes API server,
runs a benign workload set and then each rule's canary attack in throwaway
runc containers, prints every alert as it arrives (rule, Pod, technique,
latency from the decisive syscall), and ends with a summary: attacks
detected, false positives among the benign runs, latency, kernel loss."""

VERIFY = """\
Starts the agent with the given config (so it is that config's rules that are
verified), runs each rule's canary scenario in a throwaway container, and
reports per rule: fired, fired late (after --late-ms) or did not fire, with
the latency from the decisive syscall to the alert. Exit status 0 only if
every rule fired in time; 1 if any did not; 2 if verification could not run."""


def add_scenario_subcommands(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="run benign workloads and every attack in throwaway containers, show the alerts live (root)",
        description=DEMO,
    )
    demo.add_argument("--wait", type=float, default=5.0, help="seconds to wait for each attack's alert (5)")
    demo.add_argument("--late-ms", type=float, default=1000.0, help="an alert later than this is late (1000)")
    demo.add_argument("--workdir", metavar="DIR", help="keep the lab and agent files here")
    demo.add_argument(
        "--agent-arg",
        dest="agent_args",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the agent, e.g. --agent-arg=--set --agent-arg=log.level=debug",
    )
    demo.set_defaults(func=_run_demo)

    verify = sub.add_parser(
        "verify",
        help="prove every rule fires on this node: one canary attack per rule (root)",
        description=VERIFY,
    )
    verify.add_argument("--config", "-c", metavar="FILE", help="the agent config to verify")
    verify.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    verify.add_argument("--rules-dir", action="append", metavar="DIR", help="a directory of user Sigma rules")
    verify.add_argument("--rule", action="append", metavar="NAME", help="verify only this rule (repeatable)")
    verify.add_argument(
        "--late-ms", type=float, default=1000.0, help="an alert later than this is late (1000)"
    )
    verify.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the alerts (10)")
    verify.add_argument("--json", action="store_true", help="print the results as JSON")
    verify.add_argument("--workdir", metavar="DIR", help="keep the lab and agent files here")
    verify.set_defaults(func=_run_verify)


def _run_demo(args: argparse.Namespace) -> int:
    from exporter.scenarios import demo

    return demo.main(args)


def _run_verify(args: argparse.Namespace) -> int:
    from exporter.scenarios import verify

    return verify.main(args)
