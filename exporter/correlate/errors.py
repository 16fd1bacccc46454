"""Rule errors that say where (file:line) and what was expected."""

from __future__ import annotations


class RuleError(Exception):
    """One problem in one rule file. `cause` groups problems in reports."""

    def __init__(self, file: str, line: int, message: str, cause: str = "invalid", rule: str = "") -> None:
        self.file = file
        self.line = line
        self.message = message
        self.cause = cause
        self.rule = rule
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = f" (rule {self.rule!r})" if self.rule else ""
        return f"{where}: {self.message}{who}"


class NotApplicable(RuleError):
    """A valid rule provex cannot evaluate: its logsource is not produced here, or
    it needs a field provex has no value for. It is skipped with a warning, not
    refused: a community corpus mixes such rules with ones that run."""


class RulesError(Exception):
    """A rule set was refused: every error found, nothing of it loaded."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        super().__init__(
            f"{len(errors)} rule error(s), no rules loaded:\n" + "\n".join(f"  {e}" for e in errors)
        )
