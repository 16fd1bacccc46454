"""The `provex demo` and `provex verify` subcommands: their options and help.

Only argparse wiring, so that building the CLI's parser (every command does) does not
import the scenario machinery (the lab, runc, the API-server stand-in).
"""

from __future__ import annotations

import argparse
import os
import sys
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
the latency from the decisive syscall to the alert. A rule without a canary
scenario (your own, from --rules-dir) is proved by its positive fixtures
(DIR/fixtures/<file stem>/positive/*.jsonl, as `provex rules test` reads them)
replayed through the rules the agent loads; one with none fails as untested.
Exit status 0 only if every rule fired in time; 1 if any did not; 2 if
verification could not run."""


def add_scenario_subcommands(sub: Any) -> None:
    for name, text, description, arguments in (
        ("demo", "run benign workloads and every attack in throwaway containers, show the alerts live (root)",
         DEMO, _demo_arguments),
        ("verify", "prove every rule fires on this node: one canary attack per rule (root)", VERIFY,
         _verify_arguments),
    ):  # fmt: skip
        parser = sub.add_parser(name, help=text, description=description)
        arguments(parser)
        parser.set_defaults(func=lambda args, name=name: _run(name, args))


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for each attack's alert (5)")
    parser.add_argument(
        "--late-ms", type=float, default=1000.0, help="an alert later than this is late (1000)"
    )
    parser.add_argument("--workdir", metavar="DIR", help="keep the lab and agent files here")
    parser.add_argument(
        "--agent-arg",
        dest="agent_args",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the agent, e.g. --agent-arg=--set --agent-arg=log.level=debug",
    )


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", help="the agent config to verify")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    parser.add_argument("--rules-dir", action="append", metavar="DIR", help="a directory of user Sigma rules")
    parser.add_argument("--rule", action="append", metavar="NAME", help="verify only this rule (repeatable)")
    parser.add_argument(
        "--late-ms", type=float, default=1000.0, help="an alert later than this is late (1000)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the alerts (10)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--workdir", metavar="DIR", help="keep the lab and agent files here")


def _run(command: str, args: argparse.Namespace) -> int:
    """`provex demo` or `provex verify`: root only; a lab that cannot run is exit status 2."""
    from exporter.errors import render
    from exporter.scenarios import demo, verify
    from exporter.scenarios.agent import AgentError
    from exporter.scenarios.library import ScenarioError
    from exporter.scenarios.runc import ContainerError

    if os.geteuid() != 0:
        print(f"provex {command}: needs root (eBPF probes and runc containers)", file=sys.stderr)
        return 2
    try:
        return demo.run_demo(args, sys.stdout) if command == "demo" else verify.main(args)
    except ScenarioError as exc:  # a scenario file: every error, located
        print(render(exc, f"provex {command}"), file=sys.stderr)
        return 2
    except (AgentError, ContainerError, OSError) as exc:
        print(f"\nprovex {command}: cannot run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
