"""Errors a user can fix, each naming the file or key it concerns and the fix.

Every such error is a MaskfoldError, which the `maskfold` command prints as one line. Anything else is a bug: the
command prints one line and how to see its traceback (`--debug`). The builtin base beside MaskfoldError
(ValueError, FileNotFoundError, RuntimeError) keeps the kind callers and tests already know."""
from __future__ import annotations

from dataclasses import dataclass


class MaskfoldError(Exception):
    """An error the user can fix; its message names what is wrong and the fix."""


class BadInput(MaskfoldError, ValueError):
    """A value the user gave (a command option, a file's content) that cannot be used. Fix: the message names the
    value and what is accepted; change it."""


class MissingInput(MaskfoldError, FileNotFoundError):
    """A file or folder that the user names, or that an earlier command writes, is not there. Fix: point at the
    right path, or run the command that writes it (the message names it)."""


class MissingExtra(MaskfoldError, RuntimeError):
    """A setting needs an optional extra that is not installed. Fix: run the pip line the message holds, or
    change the setting."""


class Occupied(MaskfoldError, RuntimeError):
    """Another process is doing this work now; the message says to wait for it or stop it."""


class JobsFailed(MaskfoldError, RuntimeError):
    """Jobs of train-all failed, each named with its error; the others' work is kept."""


@dataclass
class Problem:
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


class DataError(MaskfoldError, RuntimeError):
    """Raised by training when the data fails the checks that `maskfold check-data` prints. Fix: run `maskfold
    check-data` for the full report, mend each file it names (or add a label-fix row), and rerun."""

    def __init__(self, problems: list[Problem], hint: str | None = "run `maskfold check-data` for the full report"):
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s){f'; {hint}' if hint else ''}:\n{shown}{more}")
