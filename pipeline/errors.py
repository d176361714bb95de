"""Errors a user can fix, each naming the file it concerns and the fix."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Problem:
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


class DataError(RuntimeError):
    """Raised by training when the data fails the checks that `maskfold check-data` prints."""

    def __init__(self, problems: list[Problem], hint: str = "run `maskfold check-data` for the full report"):
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s); {hint}:\n{shown}{more}")
