"""`--fail-on`: which verdicts or finding levels make the exit code 1.

Why both verdicts and levels: a CI job usually cares about the verdict ("fail if any run
overfits"), while a linter-style gate cares about severity ("fail on any error"). A comma list may
mix both; a run fails when its verdict is listed, or when any of its findings or ingest problems is
at or above the listed level.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.report import LEVELS, VERDICTS, Finding, Report, RunResult

#: Default of `--fail-on`: like a linter, only error-level findings (and unreadable files) fail CI.
DEFAULT_FAIL_ON = "error"
_NEVER = ("none", "never")


class FailOnError(ValueError):
    """Raised for an unparseable `--fail-on` value; the CLI turns it into exit code 2."""


@dataclass(frozen=True)
class FailOn:
    verdicts: frozenset[str] = frozenset()
    min_level: str | None = None  # "info" | "warning" | "error" | None (no level gate)

    def level_fails(self, level: str) -> bool:
        if self.min_level is None:
            return False
        return LEVELS.index(level) >= LEVELS.index(self.min_level)

    def failing_findings(self, result: RunResult) -> list[Finding]:
        return [f for f in result.findings if self.level_fails(f.level)]

    def run_fails(self, result: RunResult) -> bool:
        if result.verdict in self.verdicts:
            return True
        if self.failing_findings(result):
            return True
        return any(self.level_fails(i.level) for i in result.run.issues)

    def report_fails(self, report: Report) -> bool:
        if any(self.run_fails(r) for r in report.runs):
            return True
        return any(self.level_fails(e.level) for e in report.errors)

    def describe(self) -> str:
        parts = sorted(self.verdicts)
        if self.min_level:
            parts.append(f"level >= {self.min_level}")
        return ", ".join(parts) if parts else "never"


def parse_fail_on(text: str) -> FailOn:
    """Parse e.g. `overfitting,underfitting`, `warning`, `overfitting,error` or `none`."""
    verdicts: set[str] = set()
    levels: list[str] = []
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not items:
        raise FailOnError(
            "--fail-on: empty value; use verdicts and/or a level, e.g. 'overfitting,underfitting' or 'error'"
        )
    for item in items:
        if item in VERDICTS:
            verdicts.add(item)
        elif item in LEVELS:
            levels.append(item)
        elif item in _NEVER:
            continue
        else:
            known = ", ".join((*VERDICTS, *LEVELS, "none"))
            raise FailOnError(f"--fail-on: unknown item {item!r}; expected any of: {known}")
    min_level = min(levels, key=LEVELS.index) if levels else None
    return FailOn(frozenset(verdicts), min_level)
