"""The `provex demo` and `provex verify` subcommands (argparse wiring only)."""

from __future__ import annotations

import argparse
from typing import Any


def add_scenario_subcommands(sub: Any) -> None:
    from exporter.scenarios import demo, verify

    d = sub.add_parser(
        "demo",
        help="run benign workloads and every attack in throwaway containers, show the alerts live (root)",
        description=demo.__doc__.split("\n\n")[1] if demo.__doc__ else None,
    )
    demo.add_arguments(d)
    d.set_defaults(func=_lazy("demo"))
    v = sub.add_parser(
        "verify",
        help="prove every rule fires on this node: one canary attack per rule (root)",
        description=verify.__doc__.split("\n\n")[1] if verify.__doc__ else None,
    )
    verify.add_arguments(v)
    v.set_defaults(func=_lazy("verify"))


def _lazy(name: str):
    def run(args: argparse.Namespace) -> int:
        from exporter.scenarios import demo, verify

        return (demo if name == "demo" else verify).main(args)

    return run
