"""Importers for age-labelled face photos. Each returns (faces table, malformed entries).

The table has one row per face: file (absolute path), age, gender (male/female), race. A malformed entry is
reported with the reason and skipped, never guessed.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config.typed_yaml import where_relative
from pipeline.errors import BadInput, MissingInput
from pipeline.tables.fields import IMAGE_EXTS, parse_gender

UTK_RACES = ("White", "Black", "Asian", "Indian", "Others")
UTK_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)\.jpg(\.chip\.jpg)?$", re.IGNORECASE)
COLUMNS = ["file", "age", "gender", "race"]


def import_utkface(folder: str | Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """UTKFace names: {age}_{gender}_{race}_{datetime}.jpg[.chip.jpg]; gender 0 male / 1 female; race 0-4."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInput(f"{folder}: UTKFace folder not found{where_relative(folder)}; set external.path")
    rows, bad = [], []
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        m = UTK_NAME.match(f.name)
        if not m:
            bad.append((str(f), "name is not {age}_{gender}_{race}_{datetime}.jpg"))
            continue
        age, gender, race = int(m[1]), int(m[2]), int(m[3])
        if gender not in (0, 1):
            bad.append((str(f), f"gender field {gender} is not 0 (male) or 1 (female)"))
        elif race >= len(UTK_RACES):
            bad.append((str(f), f"race field {race} is not 0-4"))
        elif not 0 < age < 120:
            bad.append((str(f), f"age {age} out of range"))
        else:
            rows.append((str(f.resolve()), age, ("male", "female")[gender], UTK_RACES[race]))
    return pd.DataFrame(rows, columns=COLUMNS), bad


def _fairface_age(value: str) -> int | None:
    """FairFace age ranges ('60-69', 'more than 70') to the range's lower bound: a conservative age."""
    s = str(value).strip().lower()
    m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", s)
    if m and int(m[1]) <= int(m[2]):
        return int(m[1])
    m = re.fullmatch(r"(more than|over|\+)\s*(\d+)|(\d+)\s*\+", s)
    if m:
        return int(m[2] or m[3])
    return None


def import_fairface(table: str | Path, images_dir: str | Path | None = None):
    """A FairFace-style table: file, age (a range such as 60-69), gender[, race]."""
    return _import_table(table, images_dir, _fairface_age, "an age range such as 60-69 or 'more than 70'")


def _plain_age(value) -> int | None:
    s = str(value).strip()
    return int(float(s)) if re.fullmatch(r"\d+(\.0+)?", s) and 0 < float(s) < 120 else None


def import_csv(table: str | Path, images_dir: str | Path | None = None):
    """A plain table: path, age, gender[, race]."""
    return _import_table(table, images_dir, _plain_age, "a whole number of years")


def _import_table(table, images_dir, parse_age, age_hint):
    table = Path(table)
    if not table.is_file():
        raise MissingInput(f"{table}: table not found{where_relative(table)}; set external.path")
    try:
        df = pd.read_csv(table, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise BadInput(f"{table}: not a readable CSV table ({type(e).__name__}); write it as plain comma-separated "
                       f"text with a header line: file (or path), age, gender[, race]") from None
    file_col = "file" if "file" in df.columns else "path"
    need = [file_col, "age", "gender"]
    absent = [c for c in need if c not in df.columns]
    if absent:
        raise BadInput(f"{table}: missing column(s) {', '.join(absent)}; need file (or path), age, gender[, race]")
    root = Path(images_dir) if images_dir else table.parent
    rows, bad = [], []
    for line, r in enumerate(df.to_dict("records"), start=2):
        where = f"{table} line {line}"
        f = Path(r[file_col])
        f = f if f.is_absolute() else root / f
        age, gender = parse_age(r["age"]), parse_gender(r["gender"])
        if age is None:
            bad.append((where, f"age {r['age']!r} is not {age_hint}"))
        elif gender is None:
            bad.append((where, f"gender {r['gender']!r} is not male/female"))
        elif f.suffix.lower() not in IMAGE_EXTS or not f.is_file():
            bad.append((where, f"photo {f} not found (or not jpg/jpeg/png)"))
        else:
            rows.append((str(f.resolve()), age, gender, r.get("race") or "Unknown"))
    return pd.DataFrame(rows, columns=COLUMNS), bad


def select(faces: pd.DataFrame, min_age: int = 60, max_age: int | None = None, balance_gender: bool = False,
           max_persons: int = 0, seed: int = 0) -> pd.DataFrame:
    """Faces in the age range; optionally as many women as men; at most max_persons (0: all). Seeded."""
    keep = faces[(faces["age"] >= min_age) & ((faces["age"] <= max_age) if max_age is not None else True)]
    rng = np.random.default_rng(seed)
    if balance_gender and keep["gender"].nunique() == 2:
        n = keep["gender"].value_counts().min()
        parts = [g.iloc[rng.permutation(len(g))[:n]] for _, g in keep.groupby("gender")]
        keep = pd.concat(parts)
    if max_persons and len(keep) > max_persons:
        keep = keep.iloc[rng.permutation(len(keep))[:max_persons]]
    return keep.sort_values("file").reset_index(drop=True)
