"""What reading the data found: problems (refused), warnings, junk files, applied label fixes and notes, collected
so that `check-data` and training refuse bad data with the same words."""
from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.errors import Problem


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    junk: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    converted: dict = field(default_factory=dict)  # image mode -> count (grayscale, CMYK, RGBA: converted)
    notes: list[str] = field(default_factory=list)

    def problem(self, file, message):
        self.problems.append(Problem(str(file), message))
