"""Rule errors that say where (file:line) and what was expected."""

from __future__ import annotations

from exporter.errors import InputError, InputErrors, Source


class RuleError(InputError):
    """One problem in one rule file. `cause` groups problems in reports."""

    def __init__(
        self, file: str, line: int, message: str, cause: str = "invalid", rule: str = "", column: int = 0
    ) -> None:
        self.message = message
        self.cause = cause
        self.rule = rule
        who = f" (rule {rule!r})" if rule else ""
        super().__init__(f"{message}{who}", Source(file, line, column))


class NotApplicable(RuleError):
    """A valid rule provex cannot evaluate: its logsource is not produced here, or
    it needs a field provex has no value for. `provex run` refuses it unless told to
    skip such rules (correlate.skip_unsupported_rules); a community corpus mixes such
    rules with ones that run."""


class RulesError(InputErrors):
    """A rule set was refused: every error found, nothing of it loaded."""

    def __init__(self, errors: list[RuleError]) -> None:
        super().__init__(errors)
        self.errors: list[RuleError] = errors  # type: ignore[assignment]
