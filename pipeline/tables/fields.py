"""The columns of the tables and the rules for one field, shared by train.csv, the label fixes and the importers
of outside faces, so that every file is held to the same words."""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pandas as pd

from pipeline.labels import MAX_AGE
from pipeline.tables.report import Report

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
TRAIN_COLUMNS = ("id", "gender", "race", "age", "path")
# One row per photo; path is relative to data_dir, or absolute for external photos.
CONTRACT_COLUMNS = [
    "image_id", "path", "person_id", "gender", "race", "age", "age_band", "mask", "photo", "label", "source",
]


def read_table(path: Path, columns, report: Report) -> pd.DataFrame | None:
    """A CSV read as text, or None with a problem named when it is empty, unparsable or lacks `columns`."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        report.problem(path, f"empty file (no header); it must start with the header {','.join(columns)}")
        return None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        report.problem(path, f"not a readable CSV ({str(e).strip().splitlines()[0]}); re-export it as plain CSV")
        return None
    if not isinstance(table.index, pd.RangeIndex):  # pandas makes the first column the index of longer rows
        report.problem(path, "data rows have more fields than the header (a trailing comma on each row?); remove the "
                             f"extra commas so that each row has the header's {len(table.columns)} fields")
        return None
    absent = [c for c in columns if c not in table.columns]
    if absent:
        report.problem(path, f"missing column(s) {', '.join(absent)}; the header must be {','.join(columns)}")
        return None
    return table


def person_folder(path: str) -> str:
    """One spelling per folder: `x/`, `./x` and `x//` are `x` ('..' is kept, to be refused)."""
    norm = PurePosixPath(path).as_posix() if path else ""
    return "" if norm == "." else norm


def bad_folder_name(path: str) -> bool:
    """A person's `path` must be a folder under train/images/, never absolute or climbing out with `..`."""
    p = Path(path)
    return not path or p.is_absolute() or ".." in p.parts or path.startswith(("/", "\\"))


def parse_gender(value) -> str | None:
    """male/female from the spellings seen in face data sets (male, M, 0 / female, F, 1), else None."""
    g = str(value).strip().lower()
    return "male" if g in ("male", "m", "0") else ("female" if g in ("female", "f", "1") else None)


def age_problem(value) -> tuple[int | None, str | None]:
    """(age, None) for a whole number of years in range, else (None, what is wrong): train.csv's rule and the label
    fixes' alike."""
    s = str(value).strip()
    if not re.fullmatch(r"\d+(\.0+)?", s):
        return None, f"age {value!r} is not a whole number; write the age in years"
    age = int(float(s))
    if not 0 < age < MAX_AGE:
        return None, f"age {age} is out of range (1-{MAX_AGE - 1}); correct the row"
    return age, None


def image_file(data_dir: str | Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(data_dir) / p
