"""The persons train.csv lists, each with its photo files found in train/images/<path>/."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.labels import PHOTOS
from pipeline.tables.fields import IMAGE_EXTS, age_problem, bad_folder_name, parse_gender
from pipeline.tables.report import Report


@dataclass
class Person:
    id: str
    folder: str  # the path column, one spelling per folder: the person's key (ids repeat)
    gender: str
    race: str
    age: int
    photos: dict[str, str]  # photo name (mask1 ... normal) -> file name in the folder


def read_persons(table: pd.DataFrame, csv: Path, images: Path, report: Report, skip: set[str],
                 whole: bool = True) -> list[Person]:
    """train.csv's rows as persons; a row with a bad field or folder is a problem and left out. Folders in `skip`
    (listed twice) are already reported."""
    persons = []
    for line, row in enumerate(table.itertuples(index=False), start=2):
        where = f"{csv} line {line}"
        gender = _parse_gender(row.gender, where, report)
        age = _parse_age(row.age, where, report)
        if row.path in skip:
            continue
        if bad_folder_name(row.path):
            report.problem(where, f"path {row.path!r} must be a person folder name under train/images/ (not absolute, "
                                  f"no '..'); correct line {line} of train.csv")
            continue
        folder = images / row.path
        if not row.path or not folder.is_dir():
            report.problem(folder, f"person folder for '{row.id}' not found; restore it or drop line {line} of train.csv")
            continue
        photos = person_photos(folder, row.path, report, whole)
        if gender is None or age is None:
            continue
        persons.append(Person(row.id, row.path, gender, row.race, age, photos))
    return persons


def _parse_gender(value, file, report) -> str | None:
    g = parse_gender(value)
    if g is None:
        report.problem(file, f"unknown gender {value!r}; write male or female")
    return g


def _parse_age(value, file, report) -> int | None:
    age, problem = age_problem(value)
    if problem:
        report.problem(file, problem)
    return age


def person_photos(folder: Path, person: str, report: Report, whole: bool = True) -> dict[str, str]:
    """Map each of the 7 photo names to its file name; junk is counted, gaps and extras are problems.

    whole=False (pseudo-labelled photos: one photo per "person") asks for at least one photo instead of all 7.
    """
    found: dict[str, str] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        report.problem(folder, f"person {person}'s folder cannot be read ({e.strerror}); fix its permissions or links")
        return found
    for f in entries:
        name = f.name
        if not name.startswith(".") and f.is_dir() and f.stem in PHOTOS and f.suffix.lower() in IMAGE_EXTS:
            report.problem(f, f"a folder where photo {f.stem} belongs; replace it with the photo itself")
            continue
        if name.startswith(".") or f.is_dir() or f.suffix.lower() not in IMAGE_EXTS:
            report.junk.append(str(f))
            continue
        if not f.is_file():  # a dangling or looping link, a FIFO or a device: named, never silently dropped
            what = "not a regular file (a FIFO, socket or device)" if f.exists() else "a broken or looping link"
            report.problem(f, f"photo is {what}; replace it with the photo itself")
            continue
        stem = f.stem
        if stem not in PHOTOS:
            report.problem(f, f"extra photo in person {person}: expected only {', '.join(PHOTOS)}; remove or rename it")
        elif stem in found:
            report.problem(f, f"two files for photo '{stem}' ({found[stem]} and {name}); keep one")
        else:
            found[stem] = name
    missing = [p for p in PHOTOS if p not in found]
    if missing and (whole or not found):
        report.problem(folder, f"person {person} is missing photo(s) {', '.join(missing)}; restore them or drop the row")
    return found


def unlisted_folders(images: Path, table: pd.DataFrame, csv: Path, report: Report) -> None:
    """Person folders that train.csv does not list are never trained on: a warning, since a lost row looks alike."""
    listed = {Path(p).parts[0] for p in table["path"] if p and Path(p).parts}
    try:
        unlisted = sorted(f.name for f in images.iterdir() if f.is_dir() and not f.name.startswith(".")
                          and f.name not in listed)
    except OSError:
        return  # an unreadable images/ folder is reported with the persons it holds
    if unlisted:
        report.warnings.append(f"{images}: {len(unlisted)} person folder(s) not listed in {csv}, so not used "
                               f"({', '.join(unlisted[:5])}{', ...' if len(unlisted) > 5 else ''}); add their rows "
                               f"or remove the folders")
