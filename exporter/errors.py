"""One error type for input provex cannot use, located where the user typed it.

Every stage that reads what a person wrote (the config, its YAML files, Sigma rules,
mappings, kubeconfigs, scenarios, flags and variables) raises an `InputError`: the
problem, what is allowed, and a `Source` (file, line and column where known, or the
flag or variable as typed). `InputErrors` carries every error of a file or a start-up
at once. The CLI renders them all the same way, one line each (`render`):

    provex: SOURCE[:LINE[:COLUMN]]: what is wrong; what is allowed

The model is pySigma's `sigma/exceptions.py`: one base whose location every subclass
inherits, so no stage flattens a location into a string to pass it on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """Where an input came from: a file (with its line and column when known), or what
    was typed (`--otlp-endpoint`, `environment OTEL_EXPORTER_OTLP_TIMEOUT`)."""

    name: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.name
        return f"{self.name}:{self.line}" + (f":{self.column}" if self.column else "")


class InputError(ValueError):
    """Input that cannot be used. `str()` is `SOURCE: problem[; allowed]`."""

    def __init__(self, problem: str, source: Source | str | None = None, allowed: str = "") -> None:
        self.problem = problem
        self.source = Source(source) if isinstance(source, str) else source
        self.allowed = allowed
        super().__init__(self.problem)

    @property
    def file(self) -> str:
        return self.source.name if self.source else ""

    @property
    def line(self) -> int:
        return self.source.line if self.source else 0

    def text(self) -> str:
        """The problem and what is allowed, without the location."""
        return f"{self.problem}; {self.allowed}" if self.allowed else self.problem

    def __str__(self) -> str:
        where = str(self.source) if self.source else ""
        return f"{where}: {self.text()}" if where else self.text()


class InputErrors(InputError):
    """Several input errors found together (all of a file, or all of a start-up)."""

    def __init__(self, errors: Iterable[InputError]) -> None:
        self.errors = flatten(errors)
        first = self.errors[0] if self.errors else InputError("no error")
        super().__init__(first.problem, first.source, first.allowed)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def flatten(errors: Iterable[InputError]) -> list[InputError]:
    """Each error once, groups opened, in the order found."""
    out: list[InputError] = []
    for err in errors:
        out += err.errors if isinstance(err, InputErrors) else [err]
    return out


def raise_all(errors: Iterable[InputError]) -> None:
    """Raise the errors (one as itself, several as InputErrors); nothing when there is none."""
    found = flatten(errors)
    if len(found) == 1:
        raise found[0]
    if found:
        raise InputErrors(found)


def render(error: InputError, prog: str = "provex") -> str:
    """The lines the CLI prints for `error`: one per error, each `prog: SOURCE: problem`."""
    errors = error.errors if isinstance(error, InputErrors) else [error]
    return "\n".join(f"{prog}: {e}" for e in errors)
